package tenancy_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestMoveSourceOutlastsIdleInTransactionTimeout: the copy's source
// transaction holds the tenant's tables against writes, idle, from the
// copy to the drop of the old schema (the target's checksums, the switch,
// the grace period). A source database whose
// idle_in_transaction_session_timeout is shorter than that (an operator's
// guard against forgotten sessions) must not end it: a write that waited
// for the copy would then commit into the old schema, which the tenant no
// longer reads once switched, and the old schema would not be dropped.
// Before, the server ended the source's session and both happened.
func TestMoveSourceOutlastsIdleInTransactionTimeout(t *testing.T) {
	t.Parallel()
	b := setupTwoServers(t)
	acme := b.provision(t, "acme", "main")
	// For the connections opened from now on: the copy's own among them.
	setDatabaseDefault(t, b.ctx, b.pool, "idle_in_transaction_session_timeout", "250ms")
	var wrote <-chan error
	opts := tenancy.WithBeforeSwitch(tenancy.MoveOptions{Grace: time.Millisecond}, func(ctx context.Context) error {
		wrote = writeWaitingForTheCopy(t, ctx, b)
		// The switch waits until the source's transaction has been idle
		// for 8 times the server's timeout, or the server ended it.
		testenv.WaitFor(t, 30*time.Second, "the copy's source transaction idle past the timeout, or ended", func() bool {
			var holders, longIdle int
			err := b.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE a.state = 'idle in transaction' AND a.state_change < pg_catalog.now() - interval '2 s')
				FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation
				JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
				WHERE l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
				  AND c.relname = 'customers' AND l.mode = 'ExclusiveLock' AND l.granted`).Scan(&holders, &longIdle)
			if err != nil {
				t.Error(err)
				return true
			}
			return holders == 0 || longIdle > 0
		})
		return nil
	})
	m, err := b.svc.Move(b.ctx, acme.ID, "second", "test", opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err == nil {
		t.Error("a write made during the move was committed into the old schema, where the tenant no longer reads")
	}
	if !m.OldSchemaDropped || exists(t, b.ctx, b.pool, acme.Schema) {
		t.Errorf("old schema dropped: %t, still on main: %t; want dropped", m.OldSchemaDropped, exists(t, b.ctx, b.pool, acme.Schema))
	}
	if got := b.numbers(t, acme.ID); !slices.Equal(got, []string{"acme-1", "acme-2"}) {
		t.Errorf("acme sees %v after the move", got)
	}
}
