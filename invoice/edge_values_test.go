package invoice_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/pdf"
	"github.com/invoicing/tenantworker/schema"
)

// TestCurrencyCaseFoldingAgreesWithSQL: a currency code the app
// lower-cased in a Turkish locale ("ISK" -> "ısk", dotless i) must load
// as a code that rounds to the same minor units minor_units() used for
// the stored amount.
func TestCurrencyCaseFoldingAgreesWithSQL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		var cust int64
		if err := tx.QueryRow(ctx, appCustomerSQL, "c", "c@x", nil).Scan(&cust); err != nil {
			return err
		}
		for _, stored := range []string{"ısk", "ıqd", "bıf", "uyı"} {
			var id int64
			if err := tx.QueryRow(ctx, appInvoiceFullSQL, cust, "N-"+stored, "sent", "0", stored, nil, "").Scan(&id); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, appLineFullSQL, id, "x", "1", "10.55"); err != nil {
				return err
			}
			got, err := invoice.Load(ctx, tx, id)
			if err != nil {
				return err
			}
			var sqlUnits int32
			var sqlSum string
			if err := tx.QueryRow(ctx, `SELECT minor_units(currency), (SELECT sum(round(quantity * unit_price, minor_units(i.currency)))::text FROM line_items WHERE invoice_id = i.id) FROM invoices i WHERE id = $1`,
				id).Scan(&sqlUnits, &sqlSum); err != nil {
				return err
			}
			if goUnits := pdf.MinorUnits(got.Currency); goUnits != sqlUnits {
				t.Errorf("currency stored as %q loads as %q: document rounds to %d digits (sum %s), minor_units() in SQL to %d (sum %s)",
					stored, got.Currency, goUnits, pdf.Subtotal(asPDF(got)), sqlUnits, sqlSum)
			}
		}
		return nil
	})
}

// Many lines, unicode, explicit positions out of insertion order.
func TestManyLinesOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		n := invoice.New{Number: "MANY", Customer: invoice.Customer{Name: "Łódź ✓", Email: "l@x"}}
		for i := 0; i < 3000; i++ {
			n.Lines = append(n.Lines, invoice.Line{Description: fmt.Sprintf("ligne %d — 日本 🚀 '\"\\", i), Quantity: dec("999999999.999"), UnitPrice: dec("-0.01")})
		}
		n.Amount.Valid = true
		ids, err := invoice.Create(ctx, tx, n)
		if err != nil {
			return err
		}
		got, err := invoice.Load(ctx, tx, ids[0])
		if err != nil {
			return err
		}
		if len(got.Lines) != 3000 {
			t.Fatalf("%d lines", len(got.Lines))
		}
		for i, l := range got.Lines {
			if !strings.HasPrefix(l.Description, fmt.Sprintf("ligne %d ", i)) || !l.Quantity.Equal(dec("999999999.999")) {
				t.Fatalf("line %d = %+v", i, l)
			}
		}
		return nil
	})
	_ = schema.LatestVersion
}

// Create's computed amount must be the total the document prints from the
// stored lines: each line rounded, then summed (three lines of 0.333 x
// 1.25 = 0.41625 are 0.42 each, 1.26 in all, not 1.25), also for the
// app's columns and for a currency with 3 minor units.
func TestCreateAmountMatchesStoredLines(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		for i, app := range []bool{false, true} {
			for _, tc := range []struct{ currency, want string }{{"EUR", "1.26"}, {"JPY", "0"}, {"KWD", "1.25"}} {
				l := invoice.Line{Description: "x", Quantity: dec("0.333"), UnitPrice: dec("1.25")}
				n := invoice.New{Number: fmt.Sprintf("SUB-%d-%s", i, tc.currency), Customer: invoice.Customer{Name: "c", Email: fmt.Sprintf("c%d@x", i)},
					Currency: tc.currency, AppColumns: app, Lines: []invoice.Line{l, l, l}}
				ids, err := invoice.Create(ctx, tx, n)
				if err != nil {
					return err
				}
				got, err := invoice.Load(ctx, tx, ids[0])
				if err != nil {
					return err
				}
				// KWD: 1.248 stored in the app's numeric(12,2).
				if sum := pdf.Subtotal(asPDF(got)); !got.Amount.Equal(dec(tc.want)) || (tc.currency != "KWD" && !sum.Equal(got.Amount)) {
					t.Errorf("AppColumns=%v %s: stored amount %s, want %s; the stored lines %+v sum to %s", app, tc.currency, got.Amount, tc.want, got.Lines, sum)
				}
			}
		}
		return nil
	})
}

// Create refuses a value its column cannot hold exactly (numeric(12,2)
// unit prices and amounts, numeric(12,3) quantities) with an error that
// names it, rather than storing it rounded: 3 x 0.335 stored as 3 x 0.34
// would bill 1.02 instead of 1.01.
func TestCreateRefusesValuesTheColumnsWouldRound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	line := func(q, p string) []invoice.Line {
		return []invoice.Line{{Description: "x", Quantity: dec(q), UnitPrice: dec(p)}}
	}
	for i, tc := range []struct {
		name   string
		lines  []invoice.Line
		amount string
		want   string
	}{
		{"sub-cent unit price", line("3", "0.335"), "", "unit price 0.335"},
		{"quantity with 4 decimals", line("0.0004", "1000"), "", "quantity 0.0004"},
		{"unit price too large", line("1", "10000000000"), "", "unit price 10000000000"},
		{"quantity too large", line("1000000000", "1"), "", "quantity 1000000000"},
		{"amount with 3 decimals", nil, "1.005", "amount 1.005"},
		{"amount too large", nil, "10000000000", "amount 10000000000"},
	} {
		for _, app := range []bool{false, true} {
			b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
				n := invoice.New{Number: fmt.Sprintf("R-%d-%v", i, app), Customer: invoice.Customer{Name: "c", Email: "r@x"}, Lines: tc.lines, AppColumns: app}
				if tc.amount != "" {
					n.Amount = decimal.NewNullDecimal(dec(tc.amount))
				}
				if _, err := tx.Exec(ctx, "SAVEPOINT r"); err != nil {
					return err
				}
				_, err := invoice.Create(ctx, tx, n)
				if err != nil {
					if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT r"); err != nil {
						return err
					}
				}
				if err == nil {
					var stored string
					_ = tx.QueryRow(ctx, `SELECT i.amount::text || coalesce(' ' || string_agg(l.quantity::text || ' x ' || l.unit_price::text, ', '), '')
						FROM invoices i LEFT JOIN line_items l ON l.invoice_id = i.id WHERE i.number = $1 GROUP BY i.amount`, n.Number).Scan(&stored)
					t.Errorf("%s (AppColumns=%v): Create stored it as %q, want an error naming %q", tc.name, app, stored, tc.want)
					return nil
				}
				if !errors.Is(err, invoice.ErrInvalidData) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s (AppColumns=%v): Create = %v, want an error wrapping ErrInvalidData naming %q", tc.name, app, err, tc.want)
				}
				return nil
			})
		}
	}
}

// TestDocumentKeyID: only keys exactly as DocumentKey writes them name an
// invoice.
func TestDocumentKeyID(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]int64{"invoices/42.pdf": 42, "invoices/9223372036854775807.pdf": 9223372036854775807,
		"invoices/042.pdf": 0, "invoices/0.pdf": 0, "invoices/-1.pdf": 0, "invoices/+1.pdf": 0, "invoices/1.pdf.pdf": 0,
		"invoices/1.PDF": 0, "other/1.pdf": 0, "invoices/sub/1.pdf": 0, "invoices/.pdf": 0, "invoices/99999999999999999999.pdf": 0} {
		id, ok := invoice.DocumentKeyID(key)
		if ok != (want != 0) || id != want {
			t.Errorf("DocumentKeyID(%q) = %d, %v; want %d", key, id, ok, want)
		}
	}
}
