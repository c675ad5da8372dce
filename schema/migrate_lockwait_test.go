package schema

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/jackc/pgx/v5"
)

// TestMigrateWaitsForTheTenantLockPastTheOperatorsTimeouts: a Migrate of a
// tenant whose step another Migrate is applying waits for the tenant's lock
// until that step commits, and then finds the step applied, also when the
// operator set lock_timeout or statement_timeout on the database (shorter
// than the step). The wait came before the step set its own bounds, so the
// operator's ended it: the second run failed with 55P03 (lock_timeout) or
// 57014 (statement_timeout), and its tenant:migrate (a provisioning's, or
// migrate --all's racing it) was retried, and archived behind a step as
// long as its retries.
func TestMigrateWaitsForTheTenantLockPastTheOperatorsTimeouts(t *testing.T) {
	t.Parallel()
	for _, setting := range []string{"lock_timeout", "statement_timeout"} {
		t.Run(setting, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 4)
			ctx := context.Background()
			if _, err := Migrate(ctx, b.pool, "tenant_acme", 0); err != nil {
				t.Fatal(err)
			}
			pool := poolUnderOperatorGuard(t, b, setting, 4)

			holding, release := make(chan struct{}), make(chan struct{})
			set := append(slices.Clone(embedded), Migration{Version: len(embedded) + 1, Name: "long step",
				run: func(ctx context.Context, tx pgx.Tx) error {
					select {
					case holding <- struct{}{}:
						<-release // the first run holds the tenant's lock until told
					default: // the second run, finding it pending after all
					}
					return nil
				}})
			tctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			type result struct {
				res MigrateResult
				err error
			}
			first, second := make(chan result, 1), make(chan result, 1)
			go func() {
				res, err := migrate(tctx, pool, "tenant_acme", 0, set)
				first <- result{res, err}
			}()
			select {
			case <-holding:
			case r := <-first:
				t.Fatalf("first migrate ended before its step: %+v, %v", r.res, r.err)
			}
			go func() {
				res, err := migrate(tctx, pool, "tenant_acme", 0, set)
				second <- result{res, err}
			}()
			var ended *result
			testenv.WaitFor(t, time.Minute, "the second migrate to wait for the tenant's lock", func() bool {
				select {
				case r := <-second:
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
				case r := <-second:
					ended = &r
				case <-time.After(5 * operatorGuard):
				}
			}
			close(release)
			if r := <-first; r.err != nil || !slices.Equal(r.res.Applied, []int{len(set)}) {
				t.Fatalf("first migrate: %+v, %v; want version %d applied", r.res, r.err, len(set))
			}
			if ended == nil {
				r := <-second
				ended = &r
			}
			if ended.err != nil {
				t.Fatalf("second migrate, waiting for the first's step under the operator's %s of %v: %v", setting, operatorGuard, ended.err)
			}
			if ended.res.To != len(set) || len(ended.res.Applied) != 0 {
				t.Errorf("second migrate: %+v; want version %d, applied by the first", ended.res, len(set))
			}
		})
	}
}
