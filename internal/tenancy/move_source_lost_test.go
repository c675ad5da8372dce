package tenancy_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/tenancy"
)

// TestMoveWhoseSourceTransactionIsLostDoesNotSwitch: the copy's source
// transaction, which holds the tenant's tables against writes from the
// copy to the drop of the old schema, ends before the switch (its backend
// terminated by an operator's pg_terminate_backend, a failover of a
// proxy, a network fault): its locks go, and a write that waited for the
// copy commits into the source, after the copy was made. The move must
// not switch then: the tenant stays where its write is, and the copy is
// dropped. Before, the move switched to the copy without it, the old
// schema (holding the write) was kept with an error saying to drop it by
// hand, and the tenant no longer saw its customer.
func TestMoveWhoseSourceTransactionIsLostDoesNotSwitch(t *testing.T) {
	t.Parallel()
	b := setupTwoServers(t)
	acme := b.provision(t, "acme", "main")
	opts := tenancy.WithBeforeSwitch(tenancy.MoveOptions{Grace: time.Millisecond}, func(ctx context.Context) error {
		wrote := writeWaitingForTheCopy(t, ctx, b)
		// The copy's source backend, the one holding the tables' lock in
		// this test's database, is terminated.
		terminateCopySource(t, ctx, b)
		// The write that waited commits into the source.
		if err := <-wrote; err != nil {
			t.Fatalf("the write that waited for the copy, once its lock went: %v", err)
		}
		return nil
	})
	m, err := b.svc.Move(b.ctx, acme.ID, "second", "test", opts)
	switch {
	case err == nil:
		t.Errorf("the move succeeded (%+v) after its source transaction was lost and a write landed in the source", m)
	case !strings.Contains(err.Error(), "is lost") || strings.Contains(err.Error(), "drop the copy"):
		t.Errorf("move: %v; want it to say the source's transaction is lost, and nothing about dropping the copy", err)
	}
	tn, err := b.catalog.TenantByID(b.ctx, acme.ID)
	if err != nil {
		t.Fatal(err)
	}
	if tn.Database != "main" {
		t.Errorf("the tenant was switched to %s, without the write that landed in main", tn.Database)
	}
	var n int
	pool, err := b.pools.ForTenant(b.ctx, tn)
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(b.ctx, `SELECT count(*) FROM tenant_acme.customers WHERE name = 'late'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("the customer written during the move, where the tenant is placed (%s): %d rows, %v; want 1", tn.Database, n, err)
	}
	if exists(t, b.ctx, b.second, acme.Schema) {
		t.Error("the copy is still on the target")
	}
	if got := b.numbers(t, acme.ID); !slices.Equal(got, []string{"acme-1", "acme-2"}) {
		t.Errorf("acme sees %v after the move", got)
	}
	if q := inDefault(t, b.queue(t, acme.ID)); q.Paused {
		t.Error("queue still paused after the failed move")
	}
}
