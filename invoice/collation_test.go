package invoice_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/pdf"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestCurrencyCaseInTurkishDatabase: a database whose default collation
// is Turkish (ICU tr-TR) upper-cases an ASCII "i" to "İ" (U+0130). A
// currency code the app stores in lower case ("isk", "inr") must still
// load as its ISO 4217 code, and the schema's minor_units must round to
// that currency's minor units (ISK has none), whatever the database's
// collation.
func TestCurrencyCaseInTurkishDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := turkishDatabase(t)
	tn, err := tenantctx.New("acme", "acme", "pro")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := schema.Migrate(ctx, pool, tn.Schema, 0); err != nil {
		t.Fatal(err)
	}
	err = schema.InTenant(tenantctx.WithTenant(ctx, tn), pool, func(ctx context.Context, tx pgx.Tx) error {
		for _, tc := range []struct{ stored, want, amount string }{
			{"isk", "ISK", "11"},
			{"inr", "INR", "10.55"},
			{"bif", "BIF", "11"},
		} {
			ids, err := invoice.Create(ctx, tx, invoice.New{
				Number: "N-" + tc.stored, Currency: tc.stored,
				Customer: invoice.Customer{Name: "c", Email: tc.stored + "@example.org"},
				Lines:    []invoice.Line{{Description: "x", Quantity: dec("1"), UnitPrice: dec("10.55")}},
			})
			if err != nil {
				return err
			}
			got, err := invoice.Load(ctx, tx, ids[0])
			if err != nil {
				return err
			}
			if got.Currency != tc.want {
				t.Errorf("currency stored as %q loads as %q, want %q", tc.stored, got.Currency, tc.want)
			}
			if !got.Amount.Equal(dec(tc.amount)) {
				t.Errorf("currency %q: stored amount %s, want %s (minor units of %s: %d)", tc.stored, got.Amount, tc.amount, tc.want, pdf.MinorUnits(tc.want))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// turkishDatabase creates a database whose default collation is Turkish
// (ICU tr-TR), dropped at the test's end, and returns a pool on it.
func turkishDatabase(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx := t.Context()
	base := testenv.Postgres(t)
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	name := u.Path[1:] + "_tr"
	if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'tr-TR' LOCALE 'C.UTF-8'`,
		pgx.Identifier{name}.Sanitize())); err != nil {
		t.Fatalf("create a database with a Turkish collation: %v", err)
	}
	t.Cleanup(func() {
		if _, err := conn.Exec(context.Background(), "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	pool, err := schema.NewPool(ctx, u.String(), schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// turkishTenantAtVersion3 returns a database with a Turkish collation
// (turkishDatabase) holding tenant acme's schema migrated to version 3,
// whose minor_units upper-cases in the database's collation.
func turkishTenantAtVersion3(t *testing.T) (*pgxpool.Pool, tenantctx.Tenant) {
	t.Helper()
	pool := turkishDatabase(t)
	tn, err := tenantctx.New("acme", "acme", "pro")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := schema.Migrate(t.Context(), pool, tn.Schema, 3); err != nil {
		t.Fatal(err)
	}
	return pool, tn
}

// TestSomethingDueAtVersion3InTurkishDatabase: a schema at version 3 (a
// tenant whose customers share an address stops there, and the worker
// fully supports it) has minor_units without the "C" collation of
// version 5, so in a database with a Turkish collation it reads "isk" as
// "İSK", 2 minor units. The sweep's "something due" must still be the
// total the document prints (invoice.Load reads the code as ISK, 0 minor
// units): over seeded random overdue invoices in lower-case codes with an
// "i", RemindersDue lists exactly those whose document total is positive.
func TestSomethingDueAtVersion3InTurkishDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, tn := turkishTenantAtVersion3(t)
	var err error
	rng := rand.New(rand.NewPCG(55, 3))
	price := func() decimal.Decimal { return decimal.New(rng.Int64N(401)-200, -2) } // -2.00 to 2.00
	var invs []invoice.New
	// Fixed cases: ISK 0.40 without lines prints ISK 0 (nothing due), and
	// 0.50 + 0.50 - 1.40 prints ISK 1 + 1 - 1 (due) where 2 decimals sum to
	// -0.40.
	invs = append(invs,
		invoice.New{Currency: "isk", Amount: decimal.NewNullDecimal(dec("0.40"))},
		invoice.New{Currency: "isk", Lines: []invoice.Line{
			{Description: "a", Quantity: dec("1"), UnitPrice: dec("0.50")},
			{Description: "b", Quantity: dec("1"), UnitPrice: dec("0.50")},
			{Description: "c", Quantity: dec("1"), UnitPrice: dec("-1.40")},
		}})
	currencies := []string{"isk", "bif", "uyi", "iqd", "Isk", "iQd"}
	for range 200 {
		inv := invoice.New{Currency: currencies[rng.IntN(len(currencies))]}
		if n := rng.IntN(4); n == 0 {
			inv.Amount = decimal.NewNullDecimal(price())
		} else {
			for range n {
				inv.Lines = append(inv.Lines, invoice.Line{Description: "x", Quantity: decimal.New(rng.Int64N(2000)-500, -3).Add(dec("0.5")), UnitPrice: price()})
			}
		}
		invs = append(invs, inv)
	}
	today := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	err = schema.InTenant(tenantctx.WithTenant(ctx, tn), pool, func(ctx context.Context, tx pgx.Tx) error {
		var customer int64
		if err := tx.QueryRow(ctx, `INSERT INTO customers (name, email) VALUES ('c', 'c@example.org') RETURNING id`).Scan(&customer); err != nil {
			return err
		}
		for i := range invs {
			invs[i].Number = fmt.Sprintf("N-%d", i)
			invs[i].Status = "overdue"
			invs[i].DueAt = today.AddDate(0, 0, -10)
			invs[i].Customer.ID = customer
		}
		ids, err := invoice.Create(ctx, tx, invs...)
		if err != nil {
			return err
		}
		want := map[int64]string{}
		for _, id := range ids {
			inv, err := invoice.Load(ctx, tx, id)
			if err != nil {
				return err
			}
			doc := pdf.Invoice{Currency: inv.Currency, Amount: decimal.NewNullDecimal(inv.Amount)}
			for _, l := range inv.Lines {
				doc.Lines = append(doc.Lines, pdf.Line{Quantity: l.Quantity, UnitPrice: l.UnitPrice})
			}
			if total := pdf.Subtotal(doc); total.Round(pdf.MinorUnits(inv.Currency)).IsPositive() {
				want[id] = pdf.FormatMoney(total, inv.Currency)
			}
		}
		got, err := invoice.RemindersDue(ctx, tx, today, 0, len(ids)+1)
		if err != nil {
			return err
		}
		listed := map[int64]bool{}
		for _, id := range got {
			listed[id] = true
			if _, ok := want[id]; !ok {
				t.Errorf("invoice %d listed as something due; its document prints nothing due", id)
			}
		}
		for id, total := range want {
			if !listed[id] {
				t.Errorf("invoice %d not listed; its document prints %s due", id, total)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCreateRoundsAtVersion3InTurkishDatabase: Create computes an
// invoice's amount, when none is given, from its lines rounded as the
// document rounds them. It passed the code as given to the schema's
// minor_units, which before version 5 upper-cases in the database's
// collation: in a Turkish one "isk" became "İSK", an unknown code rounded
// to 2 decimals instead of ISK's 0, so the stored amount was not the
// document's. It passes the code as Load reads it.
func TestCreateRoundsAtVersion3InTurkishDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, tn := turkishTenantAtVersion3(t)
	var err error
	lines := []invoice.Line{{Description: "a", Quantity: dec("1"), UnitPrice: dec("0.60")}, {Description: "b", Quantity: dec("1"), UnitPrice: dec("0.60")}}
	for _, currency := range []string{"isk", "iQd"} {
		err = schema.InTenant(tenantctx.WithTenant(ctx, tn), pool, func(ctx context.Context, tx pgx.Tx) error {
			var customer int64
			if err := tx.QueryRow(ctx, `INSERT INTO customers (name, email) VALUES ('c', 'c@example.org') RETURNING id`).Scan(&customer); err != nil {
				return err
			}
			ids, err := invoice.Create(ctx, tx, invoice.New{Number: "N-" + currency, Currency: currency, Lines: lines,
				Customer: invoice.Customer{ID: customer}})
			if err != nil {
				return err
			}
			inv, err := invoice.Load(ctx, tx, ids[0])
			if err != nil {
				return err
			}
			// Each line rounds to 1 in ISK (0 decimals); IQD has 3.
			want := dec("2")
			if inv.Currency == "IQD" {
				want = dec("1.2")
			}
			if !inv.Amount.Equal(want) {
				t.Errorf("%s invoice of lines 0.60 + 0.60 stored amount %s, want %s (the document's total)", currency, inv.Amount, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
