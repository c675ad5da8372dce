package schema

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestDropSourceOutlastsTheOperatorsLockTimeout: on a source database whose
// lock_timeout an operator set (200 ms), DropSource's DROP waits for a
// reader of the tenant's table (a report's transaction) as long as it
// reads, drops the source, and a write that waited for the copy fails.
// The DROP failed with 55P03 once the guard had passed, DropSource rolled
// the source's transaction back, and the write that had waited for the
// copy committed into the old schema, which nobody reads after the switch:
// a lost write.
func TestDropSourceOutlastsTheOperatorsLockTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srcURL := testenv.Postgres(t)
	admin, _ := newTestPool(t, srcURL, 1, nil)
	migrateTenant(t, admin, "tenant_acme")
	db := pgx.Identifier{admin.Config().ConnConfig.Database}.Sanitize()
	const guard = 200 * time.Millisecond
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+db+" SET lock_timeout = '200ms'"); err != nil {
		t.Fatal(err)
	}
	src, _ := newTestPool(t, srcURL, 0, nil) // sessions started with the guard
	dst, _ := newTestPool(t, testenv.Postgres(t), 0, nil)
	// The application's sessions wait for the move, as with the guard set
	// on the worker's role (ALTER ROLE) only.
	sep := "?"
	if strings.Contains(srcURL, "?") {
		sep = "&"
	}
	app, _ := newTestPool(t, srcURL+sep+"lock_timeout=0", 0, nil)

	// A report reads the tenant's customers in a transaction that stays
	// open past the guard.
	report, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = report.Rollback(ctx) })
	var n int
	if err := report.QueryRow(ctx, "SELECT count(*) FROM tenant_acme.customers").Scan(&n); err != nil {
		t.Fatal(err)
	}
	copied, err := BeginCopy(ctx, src, dst, "tenant_acme")
	if err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := app.Exec(ctx, "INSERT INTO tenant_acme.customers (name, email) VALUES ('written after the switch', 'lost@example.com')")
		wrote <- err
	}()
	testenv.WaitFor(t, 30*time.Second, "the write to wait for the copy", func() bool {
		n, err := testenv.LockWaiters(ctx, admin, "INSERT INTO tenant_acme.customers", "relation")
		return err == nil && n > 0
	})

	// The switch happened; the source goes.
	dropped := make(chan error, 1)
	go func() { dropped <- copied.DropSource(ctx) }()
	var derr error
	ended := false
	testenv.WaitFor(t, 30*time.Second, "the DROP to wait for the report", func() bool {
		select {
		case derr = <-dropped:
			ended = true
			return true
		default:
		}
		n, err := testenv.LockWaiters(ctx, admin, "DROP SCHEMA", "relation")
		return err == nil && n > 0
	})
	if !ended {
		// The report reads on past the guard: the DROP must wait for it.
		select {
		case derr = <-dropped:
			ended = true
		case <-time.After(5 * guard):
		}
	}
	if err := report.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if !ended {
		derr = <-dropped
	}
	werr := <-wrote
	var inSource int
	_ = admin.QueryRow(ctx, "SELECT count(*) FROM tenant_acme.customers WHERE name = 'written after the switch'").Scan(&inSource)
	if derr != nil || werr == nil {
		t.Errorf("DropSource: %v; the write that waited for the copy: committed %v (err %v), %d rows of it in the old schema; "+
			"want the source dropped and the write failed", derr, werr == nil, werr, inSource)
	}
}
