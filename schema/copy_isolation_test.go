package schema

import (
	"context"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestCopyOfARepeatableReadSourceHasAWriteItWaitedFor: on a source
// database whose default_transaction_isolation is repeatable read or
// serializable (an operator's ALTER DATABASE), a write of the tenant that
// the copy's lock of the tables waited for is in the copy: the source's
// transaction runs at read committed, so the rows it copies are read after
// its locks. Before, its snapshot was taken by the statement that took the
// tenant's shared lock, before the tables' lock waited for the write, so
// the copy (and its checksums, read in the same snapshot) left out a row
// committed in the old schema, which a move then drops.
func TestCopyOfARepeatableReadSourceHasAWriteItWaitedFor(t *testing.T) {
	t.Parallel()
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			src, _ := newTestPool(t, testenv.Postgres(t), 0, nil)
			dst, _ := newTestPool(t, testenv.Postgres(t), 0, nil)
			migrateTenant(t, src, "tenant_acme")
			if _, err := src.Exec(ctx, "DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation = %L', current_database(), '"+level+"'); END$$"); err != nil {
				t.Fatal(err)
			}
			src.Reset() // new connections take the setting
			app, err := src.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = app.Rollback(ctx) }()
			if _, err := app.Exec(ctx, "INSERT INTO tenant_acme.customers (name, email) VALUES ('late', 'late@example.com')"); err != nil {
				t.Fatal(err)
			}
			type result struct {
				res CopyResult
				err error
			}
			done := make(chan result, 1)
			go func() {
				res, err := Copy(ctx, src, dst, "tenant_acme")
				done <- result{res, err}
			}()
			deadline := time.Now().Add(10 * time.Second)
			for {
				// A session of this test's database: the server is shared.
				if n, _ := testenv.LockWaiters(ctx, src, "LOCK TABLE", "relation"); n > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the copy never waited for the write's lock")
				}
				time.Sleep(5 * time.Millisecond)
			}
			if err := app.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			r := <-done
			if r.err != nil {
				t.Fatal(r.err)
			}
			var n int
			if err := dst.QueryRow(ctx, "SELECT count(*) FROM tenant_acme.customers WHERE name = 'late'").Scan(&n); err != nil || n != 1 {
				t.Fatalf("customers named late in the copy: %d (%v), want the one committed while the copy waited", n, err)
			}
		})
	}
}
