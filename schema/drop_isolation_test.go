package schema

import (
	"context"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestDropOwnedOnARepeatableReadDatabaseWaitsForACreation: on a database
// whose default_transaction_isolation is repeatable read or serializable,
// a tenant's destroy (DropOwned) that waits for the tenant's lock while
// its schema is being created (its tenant:migrate in flight) drops the
// schema once the creation commits: the drop's transaction runs at read
// committed, so the owner it reads after the wait is the committed one.
// Before, it read the schema as missing from its snapshot, taken before
// the wait, dropped nothing, and the erased tenant's schema stayed.
func TestDropOwnedOnARepeatableReadDatabaseWaitsForACreation(t *testing.T) {
	t.Parallel()
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 4)
			ctx := context.Background()
			if _, err := b.pool.Exec(ctx, "DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation = %L', current_database(), '"+level+"'); END$$"); err != nil {
				t.Fatal(err)
			}
			b.pool.Reset() // new connections take the setting
			const owner = "tn_ffuqs47ayzxc26mj5pn2aichmu"
			creating, err := b.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = creating.Rollback(ctx) }()
			if err := lockExistence(ctx, creating, "tenant_dropped"); err != nil {
				t.Fatal(err)
			}
			if err := lockTenant(ctx, creating, "tenant_dropped"); err != nil {
				t.Fatal(err)
			}
			if err := createSchema(ctx, creating, `"tenant_dropped"`, creation{allowed: true, owner: owner}); err != nil {
				t.Fatal(err)
			}
			type result struct {
				dropped bool
				err     error
			}
			done := make(chan result, 1)
			go func() {
				dropped, err := DropOwned(ctx, b.pool, "tenant_dropped", owner)
				done <- result{dropped, err}
			}()
			deadline := time.Now().Add(10 * time.Second)
			for {
				// A session of this test's database: the server is shared.
				if n, _ := testenv.LockWaiters(ctx, b.pool, "", "advisory"); n > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the drop never waited for the creation's lock")
				}
				time.Sleep(5 * time.Millisecond)
			}
			if err := creating.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			r := <-done
			if r.err != nil || !r.dropped {
				t.Fatalf("DropOwned after the creation committed = %v, %v; want it dropped", r.dropped, r.err)
			}
			if exists, _, err := Owner(ctx, b.pool, "tenant_dropped"); err != nil || exists {
				t.Fatalf("schema exists after DropOwned: %v, %v", exists, err)
			}
		})
	}
}
