package storage_test

import (
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
)

// TestMigrateCatalogConcurrentStartOnARepeatableReadDatabase: on a
// catalog database whose default_transaction_isolation is repeatable read
// or serializable (an operator's ALTER DATABASE), processes started at
// once (a rollout) each migrate the catalog without error: a migration's
// transaction runs at read committed, so the version it reads after
// waiting for the catalog's lock is the one the start before it
// committed, not its snapshot's from before the wait.
func TestMigrateCatalogConcurrentStartOnARepeatableReadDatabase(t *testing.T) {
	t.Parallel()
	for _, level := range catalogIsolations {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			url := testenv.Postgres(t)
			ctx := testContext(t)
			admin := newTestPool(t, url)
			setDefaultIsolation(t, ctx, admin, level)
			const starters = 4
			pools := make([]*pgxpool.Pool, starters)
			for i := range pools {
				pools[i] = newTestPool(t, url) // one pool per "process"
			}
			errs := make([]error, starters)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i, pool := range pools {
				wg.Go(func() {
					<-start
					errs[i] = storage.MigrateCatalog(ctx, pool, nil)
				})
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("MigrateCatalog #%d: %v", i, err)
				}
			}
			var rows int
			if err := pools[0].QueryRow(ctx, `SELECT count(*) FROM tenancy.schema_migrations`).Scan(&rows); err != nil || rows != storage.CatalogMigrations() {
				t.Errorf("tenancy.schema_migrations: %d rows (%v), want %d", rows, err, storage.CatalogMigrations())
			}
		})
	}
}
