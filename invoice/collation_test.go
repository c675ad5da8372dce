package invoice_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"

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
	defer pool.Close()
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
