package invoice_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/shopspring/decimal"

	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/pdf"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tenantctx"
)

// The Invoicer app writes the tenant tables itself, with its model's
// columns only. These statements are what it sends: the least it must
// write (every other column has a default) and every column it has.
const (
	appCustomerSQL      = `INSERT INTO customers (name, email, company) VALUES ($1, $2, $3) RETURNING id`
	appInvoiceMinSQL    = `INSERT INTO invoices (customer_id, number, amount) VALUES ($1, $2, $3) RETURNING id`
	appInvoiceFullSQL   = `INSERT INTO invoices (customer_id, number, status, amount, currency, due_date, notes, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, now()) RETURNING id`
	appLineMinSQL       = `INSERT INTO line_items (invoice_id, description, unit_price) VALUES ($1, $2, $3)`
	appLineFullSQL      = `INSERT INTO line_items (invoice_id, description, quantity, unit_price) VALUES ($1, $2, $3, $4)`
	appDuplicateCustSQL = `INSERT INTO customers (name, email) VALUES ('Again', $1)`
)

func TestAppRowsLoad(t *testing.T) {
	t.Parallel()
	b := setup(t)
	due := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		var cust, minimal, full int64
		if err := tx.QueryRow(ctx, appCustomerSQL, "Zoë Müller", "zoe@example.org", nil).Scan(&cust); err != nil {
			t.Fatalf("the app's customer insert: %v", err)
		}
		if err := tx.QueryRow(ctx, appInvoiceMinSQL, cust, "APP-1", "100.00").Scan(&minimal); err != nil {
			t.Fatalf("the app's smallest invoice insert: %v", err)
		}
		if err := tx.QueryRow(ctx, appInvoiceFullSQL, cust, "APP-2", "sent", "1331.74", "EUR", due, "Thanks").Scan(&full); err != nil {
			t.Fatalf("the app's full invoice insert: %v", err)
		}
		// Lines without position print in insertion order; a line without
		// quantity counts once.
		for _, l := range [][]any{{full, "Consulting", "12.50", "96.00"}, {full, "Travel", "1", "171.75"}, {full, "Discount", "1", "-50.00"}} {
			if _, err := tx.Exec(ctx, appLineFullSQL, l...); err != nil {
				t.Fatalf("the app's line insert: %v", err)
			}
		}
		if _, err := tx.Exec(ctx, appLineMinSQL, full, "Support", "9.99"); err != nil {
			t.Fatalf("the app's smallest line insert: %v", err)
		}
		// The app's customers.email is unique.
		_, err := tx.Exec(ctx, "SAVEPOINT dup")
		if err == nil {
			_, err = tx.Exec(ctx, appDuplicateCustSQL, "zoe@example.org")
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
			t.Errorf("a second customer with the same email: %v, want a unique violation", err)
		}
		if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT dup"); err != nil {
			return err
		}

		got, err := invoice.Load(ctx, tx, minimal)
		if err != nil {
			t.Fatalf("Load of the app's smallest invoice: %v", err)
		}
		if got.Status != "draft" || got.Currency != "USD" || !got.DueAt.IsZero() || got.Notes != "" || !got.Amount.Equal(dec("100")) ||
			len(got.Lines) != 0 || got.Customer.Name != "Zoë Müller" || got.Customer.Company != "" || got.IssuedAt.IsZero() {
			t.Errorf("the app's smallest invoice loads as %+v", got)
		}
		got, err = invoice.Load(ctx, tx, full)
		if err != nil {
			t.Fatalf("Load of the app's full invoice: %v", err)
		}
		if got.Status != "sent" || got.Currency != "EUR" || !got.DueAt.Equal(due) || got.Notes != "Thanks" || !got.Amount.Equal(dec("1331.74")) {
			t.Errorf("the app's full invoice loads as %+v", got)
		}
		want := []string{"Consulting", "Travel", "Discount", "Support"}
		if len(got.Lines) != len(want) {
			t.Fatalf("lines %+v", got.Lines)
		}
		for i, l := range got.Lines {
			if l.Description != want[i] {
				t.Errorf("line %d is %q, want %q (insertion order)", i, l.Description, want[i])
			}
		}
		if q := got.Lines[3].Quantity; !q.Equal(decimal.NewFromInt(1)) {
			t.Errorf("a line without quantity has %s, want the default 1", q)
		}
		// Its lines add up to its amount, as the document computes them.
		if sum := pdf.Subtotal(asPDF(got)); !sum.Equal(got.Amount) {
			t.Errorf("lines sum to %s, amount %s", sum, got.Amount)
		}

		// An invoice without a due date is never overdue.
		if _, err := tx.Exec(ctx, `UPDATE invoices SET status = 'sent' WHERE id = $1`, minimal); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE invoices SET due_date = now() - interval '3 days' WHERE id = $1`, full); err != nil {
			return err
		}
		n, err := invoice.MarkOverdue(ctx, tx, time.Now())
		if err != nil || n != 1 {
			t.Errorf("MarkOverdue = %d, %v; want 1 (the invoice without a due date is never overdue)", n, err)
		}
		return nil
	})
}

// TestAppRowsWithTheirOwnIDs: the app may set the ids of the rows it
// inserts (customers, invoices, line items; "ids the app may set" in
// docs/architecture.md, "Tenant tables"), and such rows load.
func TestAppRowsWithTheirOwnIDs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		for _, stmt := range []struct{ what, sql string }{
			{"customer", `INSERT INTO customers (id, name, email) VALUES (9001, 'Zoë Müller', 'zoe@example.org')`},
			{"invoice", `INSERT INTO invoices (id, customer_id, number, amount) VALUES (9002, 9001, 'APP-9', '96.00')`},
			{"line item", `INSERT INTO line_items (id, invoice_id, description, unit_price) VALUES (9003, 9002, 'Consulting', '96.00')`},
		} {
			if _, err := tx.Exec(ctx, stmt.sql); err != nil {
				t.Fatalf("the app's %s insert with its own id: %v", stmt.what, err)
			}
		}
		got, err := invoice.Load(ctx, tx, 9002)
		if err != nil {
			t.Fatalf("Load of the app's invoice: %v", err)
		}
		if got.Customer.Name != "Zoë Müller" || len(got.Lines) != 1 || got.Lines[0].Description != "Consulting" {
			t.Errorf("the app's invoice loads as %+v", got)
		}
		return nil
	})
}

func TestCreateAppColumns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		ids, err := invoice.Create(ctx, tx,
			invoice.New{AppColumns: true, Number: "A-1", Customer: invoice.Customer{Name: "Ada", Email: "ada@example.org"},
				Lines: []invoice.Line{{Description: "Engine", UnitPrice: dec("1000.00")}, {Description: "Cards", UnitPrice: dec("0.50")}}},
			invoice.New{AppColumns: true, Number: "A-2", Customer: invoice.Customer{Name: "Ada", Email: "ada@example.org"},
				Status: "sent", Currency: "JPY", Amount: decimal.NewNullDecimal(dec("5000")), Notes: "n",
				Lines: []invoice.Line{{Description: "Compiler", Quantity: dec("3"), UnitPrice: dec("12345")}}},
		)
		if err != nil {
			return err
		}
		a1, err := invoice.Load(ctx, tx, ids[0])
		if err != nil {
			return err
		}
		if a1.Status != "draft" || a1.Currency != "USD" || !a1.Amount.Equal(dec("1000.50")) || len(a1.Lines) != 2 ||
			!a1.Lines[0].Quantity.Equal(dec("1")) || a1.Lines[1].Description != "Cards" {
			t.Errorf("A-1 = %+v", a1)
		}
		a2, err := invoice.Load(ctx, tx, ids[1])
		if err != nil {
			return err
		}
		if a2.Customer.ID != a1.Customer.ID {
			t.Errorf("the same email billed two customers: %d and %d", a1.Customer.ID, a2.Customer.ID)
		}
		// A given amount is stored as given, even when the lines disagree.
		if a2.Status != "sent" || a2.Currency != "JPY" || !a2.Amount.Equal(dec("5000")) || a2.Notes != "n" {
			t.Errorf("A-2 = %+v", a2)
		}
		if _, err := invoice.Create(ctx, tx, invoice.New{AppColumns: true, Number: "A-3", IssuedAt: time.Now(),
			Customer: invoice.Customer{ID: a1.Customer.ID}}); err == nil {
			t.Error("AppColumns with an issue date: no error")
		}
		return nil
	})
}

// TestMigrationConvertsExistingRows fills a tenant at version 2 (the
// schema before the app's model) and migrates it: every row stays, amounts
// are the lines' sums as the document computes them, lines keep their
// order.
func TestMigrationConvertsExistingRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	tn, err := tenantctx.New("legacy", "Legacy", "pro")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := schema.Migrate(ctx, b.pool, tn.Schema, 2); err != nil {
		t.Fatal(err)
	}
	type legacy struct {
		currency string
		lines    [][3]string // description, quantity, unit price
	}
	invs := []legacy{
		{"EUR", [][3]string{{"b", "0.333", "30.00"}, {"a", "12.5", "96.00"}, {"c", "1", "-50.00"}}},
		{"JPY", [][3]string{{"x", "3", "12345.50"}, {"y", "0.5", "0.99"}}},
		{"KWD", [][3]string{{"k", "0.5", "0.25"}}},
		{"USD", nil},
	}
	b.in(t, tn, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO customers (name, email) VALUES ('c', 'c@x')`); err != nil {
			return err
		}
		for i, inv := range invs {
			if _, err := tx.Exec(ctx, `INSERT INTO invoices (id, number, customer_id, status, currency, due_date)
				VALUES ($1, $2, 1, 'sent', $3, now())`, i+1, "L-"+inv.currency, inv.currency); err != nil {
				return err
			}
			// Positions run backwards to ids: print order is by position.
			for p, l := range inv.lines {
				if _, err := tx.Exec(ctx, `INSERT INTO line_items (invoice_id, position, description, quantity, unit_price)
					VALUES ($1, $2, $3, $4, $5)`, i+1, len(inv.lines)-p, l[0], l[1], l[2]); err != nil {
					return err
				}
			}
		}
		return nil
	})
	res, err := schema.Migrate(ctx, b.pool, tn.Schema, 0)
	if err != nil {
		t.Fatalf("migrate a filled version 2 schema: %v", err)
	}
	if res.From != 2 || res.To != schema.LatestVersion() {
		t.Errorf("migrate: %+v", res)
	}
	b.in(t, tn, func(ctx context.Context, tx pgx.Tx) error {
		for i, want := range invs {
			got, err := invoice.Load(ctx, tx, int64(i+1))
			if err != nil {
				return err
			}
			if len(got.Lines) != len(want.lines) {
				t.Fatalf("%s: %d lines after the migration, want %d", want.currency, len(got.Lines), len(want.lines))
			}
			for p, l := range got.Lines {
				w := want.lines[len(want.lines)-1-p]
				if l.Description != w[0] || !l.Quantity.Equal(dec(w[1])) || !l.UnitPrice.Equal(dec(w[2])) {
					t.Errorf("%s line %d = %+v, want %v", want.currency, p, l, w)
				}
			}
			sum := pdf.Subtotal(asPDF(got))
			// numeric(12,2) is the app's type: a currency with three minor
			// digits keeps two.
			if want := sum.Round(2); !got.Amount.Equal(want) {
				t.Errorf("%s: amount %s, want the lines' sum %s", got.Currency, got.Amount, want)
			}
		}
		return nil
	})
}

// A schema whose customers share email addresses stops at version 3: no
// row changes, the error counts them and names no address.
func TestMigrationRefusesDuplicateEmails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	tn, err := tenantctx.New("dupes", "Dupes", "pro")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := schema.Migrate(ctx, b.pool, tn.Schema, 3); err != nil {
		t.Fatal(err)
	}
	b.in(t, tn, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO customers (name, email) VALUES ('a', 'same@x'), ('b', 'same@x'), ('c', 'other@x')`)
		return err
	})
	_, err = schema.Migrate(ctx, b.pool, tn.Schema, 0)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" || !strings.Contains(err.Error(), "1 email addresses") || strings.Contains(err.Error(), "same@x") {
		t.Fatalf("migrate with duplicate emails: %v, want a unique violation that counts them and names none", err)
	}
	if v, _ := schema.Version(ctx, b.pool, tn.Schema); v != 3 {
		t.Errorf("version %d after the refused step, want 3", v)
	}
	b.in(t, tn, func(ctx context.Context, tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM customers`).Scan(&n); err != nil || n != 3 {
			t.Errorf("%d customers, %v; want all 3 kept", n, err)
		}
		_, err := tx.Exec(ctx, `UPDATE customers SET email = 'b@x' WHERE name = 'b'`)
		return err
	})
	if _, err := schema.Migrate(ctx, b.pool, tn.Schema, 0); err != nil {
		t.Errorf("migrate after merging: %v", err)
	}
}

// minor_units in the tenant schema (for amounts computed in SQL) agrees
// with pdf.MinorUnits (what the document prints).
func TestMinorUnitsMatchPDF(t *testing.T) {
	t.Parallel()
	b := setup(t)
	codes := []string{"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV",
		"XAF", "XOF", "XPF", "BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND", "CLF", "UYW", "USD", "EUR", "GBP", "CHF", "XXX"}
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		for _, c := range codes {
			var n int32
			if err := tx.QueryRow(ctx, `SELECT minor_units($1)`, c).Scan(&n); err != nil {
				return err
			}
			if want := pdf.MinorUnits(c); n != want {
				t.Errorf("minor_units(%s) = %d, pdf.MinorUnits = %d", c, n, want)
			}
		}
		return nil
	})
}

// asPDF is the document's view of inv's money.
func asPDF(inv invoice.Invoice) pdf.Invoice {
	out := pdf.Invoice{Currency: inv.Currency}
	for _, l := range inv.Lines {
		out.Lines = append(out.Lines, pdf.Line{Description: l.Description, Quantity: l.Quantity, UnitPrice: l.UnitPrice})
	}
	return out
}

// A currency code the app stores in lower case or padded ("jpy", "kwd")
// loads as its ISO 4217 code, so the document rounds lines to the same
// minor units as the schema's minor_units (which ignores case and
// padding) did for the stored amount: a JPY invoice has no cents, and a
// KWD line keeps its third decimal.
func TestLoadNormalizesCurrency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		var cust int64
		if err := tx.QueryRow(ctx, appCustomerSQL, "c", "c@x", nil).Scan(&cust); err != nil {
			return err
		}
		for _, tc := range []struct {
			stored, want, sum string
			lines             [][2]string // quantity, unit price
		}{
			{"jpy", "JPY", "37037", [][2]string{{"3", "12345.50"}}},
			{"kwd", "KWD", "0.416", [][2]string{{"0.333", "1.25"}}},
			{"Eur", "EUR", "1.50", [][2]string{{"1", "1.50"}}},
		} {
			var id int64
			if err := tx.QueryRow(ctx, appInvoiceFullSQL, cust, "N-"+tc.stored, "sent", "0", tc.stored, nil, "").Scan(&id); err != nil {
				return err
			}
			for _, l := range tc.lines {
				if _, err := tx.Exec(ctx, appLineFullSQL, id, "x", l[0], l[1]); err != nil {
					return err
				}
			}
			got, err := invoice.Load(ctx, tx, id)
			if err != nil {
				return err
			}
			if got.Currency != tc.want {
				t.Errorf("currency stored as %q loads as %q, want %q", tc.stored, got.Currency, tc.want)
			}
			var sqlSum string
			if err := tx.QueryRow(ctx, `SELECT sum(round(quantity * unit_price, minor_units($2)))::text FROM line_items WHERE invoice_id = $1`,
				id, tc.stored).Scan(&sqlSum); err != nil {
				return err
			}
			if sum := pdf.Subtotal(asPDF(got)); !sum.Equal(dec(tc.sum)) || !sum.Equal(dec(sqlSum)) {
				t.Errorf("%s: the document's sum is %s, want %s (minor_units in SQL gives %s)", tc.stored, sum, tc.sum, sqlSum)
			}
		}
		return nil
	})
}

// TestLoadRefusesNaN: PostgreSQL's numeric takes 'NaN'; an invoice holding
// one as its amount, a quantity or a unit price loads with ErrInvalidData,
// which the worker archives at once instead of retrying.
func TestLoadRefusesNaN(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		var cust int64
		if err := tx.QueryRow(ctx, appCustomerSQL, "c", "c@x", nil).Scan(&cust); err != nil {
			return err
		}
		for _, tc := range []struct{ name, amount, quantity, price string }{
			{"amount", "NaN", "1", "1.00"},
			{"quantity", "1.00", "NaN", "1.00"},
			{"unit price", "1.00", "1", "NaN"},
		} {
			var id int64
			if err := tx.QueryRow(ctx, appInvoiceFullSQL, cust, "NAN-"+tc.name, "sent", tc.amount, "EUR", nil, "").Scan(&id); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, appLineFullSQL, id, "x", tc.quantity, tc.price); err != nil {
				return err
			}
			if _, err := invoice.Load(ctx, tx, id); !errors.Is(err, invoice.ErrInvalidData) || !strings.Contains(err.Error(), "NaN") {
				t.Errorf("NaN %s: Load error = %v, want ErrInvalidData naming the value", tc.name, err)
			}
		}
		return nil
	})
}
