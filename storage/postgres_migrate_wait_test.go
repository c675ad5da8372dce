package storage_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
)

// TestMigrateCatalogWaitsForAnotherStartPastTheOperatorsTimeouts: a process
// that starts while another applies a catalog migration (a rollout) waits
// for the catalog's lock until that migration commits, also when the
// operator set lock_timeout or statement_timeout on the database, shorter
// than the other's migration. The wait came before the step set its own
// bounds, so the operator's ended it: under lock_timeout the start retried
// it as "waited too long for a lock on the catalog's tables (a long
// transaction holds one)", sending the operator after a transaction that
// does not exist, and did not start once its attempts were spent; under
// statement_timeout it stopped at once with 57014.
func TestMigrateCatalogWaitsForAnotherStartPastTheOperatorsTimeouts(t *testing.T) {
	t.Parallel()
	for _, setting := range []string{"lock_timeout", "statement_timeout"} {
		t.Run(setting, func(t *testing.T) {
			t.Parallel()
			url := testenv.Postgres(t)
			ctx := testContext(t)
			pool := newTestPool(t, url)
			const guard = 200 * time.Millisecond
			db := pgx.Identifier{pool.Config().ConnConfig.Database}.Sanitize()
			if _, err := pool.Exec(ctx, "ALTER DATABASE "+db+" SET "+setting+" = '200ms'"); err != nil {
				t.Fatal(err)
			}

			// Another process migrating the catalog: it holds the catalog's
			// lock for longer than the operator's bound.
			other, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close(ctx)
			otherTx, err := other.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer otherTx.Rollback(ctx) //nolint:errcheck
			if _, err := otherTx.Exec(ctx, "SET LOCAL statement_timeout = 0; SELECT pg_advisory_xact_lock(x'74656e616e637931'::int8)"); err != nil {
				t.Fatal(err)
			}

			// One attempt: a retry after the other's commit would hide a
			// wait that was cut.
			var logs bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&logs, nil))
			migrated := make(chan error, 1)
			go func() {
				migrated <- storage.MigrateCatalogWithLockTimeout(ctx, newTestPool(t, url), logger, 5*time.Second, 1, time.Second)
			}()
			var migErr error
			ended := false
			testenv.WaitFor(t, 20*time.Second, "the start to wait for the catalog's lock", func() bool {
				select {
				case migErr = <-migrated:
					ended = true
					return true
				default:
				}
				n, err := testenv.LockWaiters(ctx, pool, "pg_advisory_xact_lock", "advisory")
				return err == nil && n > 0
			})
			if !ended {
				// Held past the operator's bound: the wait must outlast it.
				select {
				case migErr = <-migrated:
					ended = true
				case <-time.After(5 * guard):
				}
			}
			if err := otherTx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if !ended {
				migErr = <-migrated
			}
			if migErr != nil {
				t.Fatalf("MigrateCatalog waiting for another start under the operator's %s of %v: %v\n%s", setting, guard, migErr, logs.String())
			}
			if strings.Contains(logs.String(), "waited too long") {
				t.Errorf("a wait for another start logged as a wait for a table lock:\n%s", logs.String())
			}
			var v int
			if err := pool.QueryRow(ctx, `SELECT max(version) FROM tenancy.schema_migrations`).Scan(&v); err != nil || v != storage.CatalogVersion() {
				t.Errorf("catalog version %d, %v; want %d", v, err, storage.CatalogVersion())
			}
		})
	}
}
