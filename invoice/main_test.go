package invoice_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tenantctx"
)

func TestMain(m *testing.M) { os.Exit(testenv.MainLeakCheck(m)) }

// bundle is a pool on a fresh database and two migrated tenant schemas.
type bundle struct {
	pool       *pgxpool.Pool
	acme, beta tenantctx.Tenant
}

func setup(t *testing.T) bundle {
	t.Helper()
	ctx := t.Context()
	pool, err := schema.NewPool(ctx, testenv.Postgres(t), schema.PoolOptions{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	b := bundle{pool: pool}
	for _, p := range []*tenantctx.Tenant{&b.acme, &b.beta} {
		slug := "acme"
		if p == &b.beta {
			slug = "beta"
		}
		if *p, err = tenantctx.New(slug, slug, "pro"); err != nil {
			t.Fatal(err)
		}
		if _, err := schema.Migrate(ctx, pool, p.Schema, 0); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// in runs fn in a transaction pinned to tn's schema.
func (b bundle) in(t *testing.T, tn tenantctx.Tenant, fn func(ctx context.Context, tx pgx.Tx) error) {
	t.Helper()
	if err := schema.InTenant(tenantctx.WithTenant(t.Context(), tn), b.pool, fn); err != nil {
		t.Fatalf("tenant %s: %v", tn.Slug, err)
	}
}

// dec parses an exact decimal.
func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// day is a UTC date.
func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
