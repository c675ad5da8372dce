package schema

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/jackc/pgx/v5"
)

// TestDropOwnedOutlastsTheOperatorsTimeouts: a tenant's destroy
// (DropOwned) waits for the tenant's lock while a migration step of the
// tenant holds it, and its DROP SCHEMA is not cut, also when the operator
// set lock_timeout or statement_timeout (200 ms) on the database. The
// wait failed with 55P03 or 57014, and a drop longer than the guard (a
// tenant with many tables on a busy server; here an event trigger makes
// it slow) failed with 57014 at every retry of the tenant:destroy until it
// was archived, the tenant left deleting with its data in place.
func TestDropOwnedOutlastsTheOperatorsTimeouts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, setting string }{
		{"wait under lock_timeout", "lock_timeout"},
		{"wait under statement_timeout", "statement_timeout"},
		{"slow drop under statement_timeout", "statement_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 4)
			ctx := context.Background()
			if _, err := Migrate(ctx, b.pool, "tenant_acme", 0); err != nil {
				t.Fatal(err)
			}
			slowDrop := tc.name == "slow drop under statement_timeout"
			if slowDrop {
				if _, err := b.pool.Exec(ctx, `CREATE FUNCTION public.slow_drop() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_catalog.pg_sleep(0.5); END $$;
					CREATE EVENT TRIGGER slow_drop ON sql_drop EXECUTE FUNCTION public.slow_drop()`); err != nil {
					t.Fatal(err)
				}
			}
			pool := poolUnderOperatorGuard(t, b, tc.setting, 4)
			dctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()

			if slowDrop {
				dropped, err := DropOwned(dctx, pool, "tenant_acme", "t1")
				if err != nil || !dropped {
					t.Fatalf("DropOwned of a drop slower than the operator's %s of %v: %v, %v; want dropped", tc.setting, operatorGuard, dropped, err)
				}
				return
			}

			// A migration step of the tenant holds its lock until told.
			holding, release := make(chan struct{}), make(chan struct{})
			set := append(slices.Clone(embedded), Migration{Version: len(embedded) + 1, Name: "long step",
				run: func(ctx context.Context, tx pgx.Tx) error {
					holding <- struct{}{}
					<-release
					return nil
				}})
			migrated := make(chan error, 1)
			go func() {
				_, err := migrate(dctx, b.pool, "tenant_acme", 0, set)
				migrated <- err
			}()
			select {
			case <-holding:
			case err := <-migrated:
				t.Fatalf("migrate ended before its step: %v", err)
			}
			type result struct {
				dropped bool
				err     error
			}
			drop := make(chan result, 1)
			go func() {
				dropped, err := DropOwned(dctx, pool, "tenant_acme", "t1")
				drop <- result{dropped, err}
			}()
			var ended *result
			testenv.WaitFor(t, time.Minute, "the drop to wait for the tenant's lock", func() bool {
				select {
				case r := <-drop:
					ended = &r
					return true
				default:
				}
				n, err := testenv.LockWaiters(ctx, b.pool, "pg_advisory_xact_lock", "advisory")
				return err == nil && n > 0
			})
			if ended == nil {
				// Held past the operator's bound: the wait must outlast it.
				select {
				case r := <-drop:
					ended = &r
				case <-time.After(5 * operatorGuard):
				}
			}
			close(release)
			if err := <-migrated; err != nil {
				t.Fatalf("migrate: %v", err)
			}
			if ended == nil {
				r := <-drop
				ended = &r
			}
			if ended.err != nil || !ended.dropped {
				t.Fatalf("DropOwned waiting for a migration step under the operator's %s of %v: %v, %v; want dropped", tc.setting, operatorGuard, ended.dropped, ended.err)
			}
		})
	}
}
