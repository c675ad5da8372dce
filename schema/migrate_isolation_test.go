package schema

import (
	"context"
	"sync"
	"testing"
)

// TestMigrateSameTenantConcurrentlyOnARepeatableReadDatabase: on a
// database whose default_transaction_isolation is repeatable read or
// serializable (an operator's ALTER DATABASE), one tenant migrated by
// several goroutines at once still applies each step once and every run
// succeeds: a step's transaction runs at read committed, so the version
// it reads after waiting for the tenant's lock is the one the run before
// it committed, not its snapshot's from before the wait.
func TestMigrateSameTenantConcurrentlyOnARepeatableReadDatabase(t *testing.T) {
	t.Parallel()
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 10)
			ctx := context.Background()
			if _, err := b.pool.Exec(ctx, "DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation = %L', current_database(), '"+level+"'); END$$"); err != nil {
				t.Fatal(err)
			}
			b.pool.Reset() // new connections take the setting
			errs := make([]error, 6)
			var wg sync.WaitGroup
			for i := range errs {
				wg.Go(func() { _, errs[i] = Migrate(ctx, b.pool, "tenant_acme", 0) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("goroutine %d: %v", i, err)
				}
			}
			var n int
			if err := b.pool.QueryRow(ctx, "SELECT count(*) FROM tenant_acme.schema_migrations").Scan(&n); err != nil || n != len(embedded) {
				t.Errorf("schema_migrations rows = %d (%v), want %d", n, err, len(embedded))
			}
		})
	}
}
