package invoice_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestLoadUnderOtherDateStyleInExecMode: behind PgBouncer the pool runs
// with default_query_exec_mode=exec (docs/operations.md), where results
// come back as text, and pgx reads a date or timestamp as text only in
// the ISO style. A database or role whose DateStyle is another ('SQL,
// DMY', 'German', as an operator sets for the other clients of a European
// shop) must still load invoices. Before, every load failed with "invalid
// PostgreSQL date/time value", so every render and reminder of the
// database's tenants failed until archived.
func TestLoadUnderOtherDateStyleInExecMode(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	due := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		_, err := invoice.Create(ctx, tx, invoice.New{ID: 1, Number: "R-1", Status: "sent", DueAt: due,
			Customer: invoice.Customer{Name: "c", Email: "c@x"}})
		return err
	})
	var db string
	if err := b.pool.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	for _, style := range []string{"SQL, DMY", "German"} {
		if _, err := b.pool.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %s SET DateStyle = '%s'`, pgx.Identifier{db}.Sanitize(), style)); err != nil {
			t.Fatal(err)
		}
		pool, err := schema.NewPool(ctx, b.pool.Config().ConnConfig.ConnString()+"&default_query_exec_mode=exec", schema.PoolOptions{MaxConns: 1})
		if err != nil {
			t.Fatal(err)
		}
		err = schema.InTenant(tenantctx.WithTenant(ctx, b.acme), pool, func(ctx context.Context, tx pgx.Tx) error {
			inv, err := invoice.Load(ctx, tx, 1)
			if err == nil && !inv.DueAt.Equal(due) {
				t.Errorf("DateStyle %s: due %v, want %v", style, inv.DueAt, due)
			}
			return err
		})
		pool.Close()
		if err != nil {
			t.Errorf("DateStyle %s: %v", style, err)
		}
	}
}
