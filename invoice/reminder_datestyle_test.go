package invoice_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestClaimSentOnUnderOtherDateStyle: on a database whose default
// DateStyle is not ISO ('SQL, DMY', which docs/operations.md's "Moving a tenant"
// names as a server default it copes with), the day of a sent reminder
// must still read YYYY-MM-DD: the handler compares it with today's date to
// say "already sent today".
func TestClaimSentOnUnderOtherDateStyle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	var db string
	if err := b.pool.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %s SET DateStyle = 'SQL, DMY'`, pgx.Identifier{db}.Sanitize())); err != nil {
		t.Fatal(err)
	}
	cfg := b.pool.Config().ConnConfig.ConnString()
	pool, err := schema.NewPool(ctx, cfg, schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	d := day(2026, 3, 1)
	err = schema.InTenant(tenantctx.WithTenant(ctx, b.acme), pool, func(ctx context.Context, tx pgx.Tx) error {
		var style string
		if err := tx.QueryRow(ctx, `SHOW DateStyle`).Scan(&style); err != nil {
			return err
		}
		t.Logf("DateStyle %s", style)
		if _, err := invoice.Create(ctx, tx, invoice.New{Number: "R-1", Status: "overdue", Customer: invoice.Customer{Name: "c", Email: "c@x"}}); err != nil {
			return err
		}
		if _, err := invoice.ClaimReminder(ctx, tx, 1, "c@x", d); err != nil {
			return err
		}
		if err := invoice.FinishReminder(ctx, tx, 1, invoice.ReminderSent, "c@x", d); err != nil {
			return err
		}
		c, err := invoice.ClaimReminder(ctx, tx, 1, "c@x", d)
		if err != nil || c != (invoice.Claim{Status: invoice.ReminderSent, SentOn: "2026-03-01"}) {
			t.Errorf("claim after the send = %+v, %v; want sent on 2026-03-01", c, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
