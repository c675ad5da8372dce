package schema

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestDropSourceDeadlockFailsTheWaitedWrite: a transaction of the
// application (or a unit of work: read, then write) that read a table of
// the source before or during the copy and then writes it waits for the
// copy's EXCLUSIVE lock. DropSource's DROP needs the ACCESS EXCLUSIVE lock
// the reader's ACCESS SHARE blocks, and PostgreSQL reports the deadlock to
// the DROP. Rolling the source's transaction back then let the waiting
// write commit into the old schema, which nobody reads after the switch: a
// lost write. The DROP must go through and the write fail.
func TestDropSourceDeadlockFailsTheWaitedWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, _ := newTestPool(t, testenv.Postgres(t), 0, nil)
	dst, _ := newTestPool(t, testenv.Postgres(t), 0, nil)
	migrateTenant(t, src, "tenant_acme")

	// The application's transaction reads first.
	app, err := src.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Rollback(ctx)
	var n int
	if err := app.QueryRow(ctx, "SELECT count(*) FROM tenant_acme.customers").Scan(&n); err != nil {
		t.Fatal(err)
	}

	c, err := BeginCopy(ctx, src, dst, "tenant_acme")
	if err != nil {
		t.Fatal(err)
	}
	// Then it writes: the write waits for the copy.
	wrote := make(chan error, 1)
	go func() {
		_, err := app.Exec(ctx, "INSERT INTO tenant_acme.customers (name, email) VALUES ('written after the switch', 'lost@example.com')")
		if err == nil {
			err = app.Commit(ctx)
		}
		wrote <- err
	}()
	testenv.WaitFor(t, 30*time.Second, "the write to wait for the copy", func() bool {
		var waiting bool
		err := src.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
			WHERE c.relname = 'customers' AND NOT l.granted)`).Scan(&waiting)
		return err == nil && waiting
	})
	// The switch happened; the source goes.
	derr := c.DropSource(ctx)
	werr := <-wrote
	var inSource, inCopy int
	_ = src.QueryRow(ctx, "SELECT count(*) FROM tenant_acme.customers WHERE name = 'written after the switch'").Scan(&inSource)
	_ = dst.QueryRow(ctx, "SELECT count(*) FROM tenant_acme.customers WHERE name = 'written after the switch'").Scan(&inCopy)
	if derr != nil || werr == nil {
		t.Errorf("DropSource: %v; the write that waited for the copy: committed %v (err %v), %d rows of it in the source, %d in the copy; "+
			"want the source dropped and the write failed", derr, werr == nil, werr, inSource, inCopy)
	}
}

// TestDropSourceWaitsForTheCancelledWrite: the write DropSource cancels
// acts on the cancellation only when its backend next runs; on a busy
// server that came after DropSource had met the same waiting write ten
// times and given up with "deadlock detected". Here the write's backend
// is stopped for a moment (SIGSTOP) while DropSource works: the DROP must
// wait for the cancellation and go through.
func TestDropSourceWaitsForTheCancelledWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, _ := newTestPool(t, testenv.Postgres(t), 0, nil)
	dst, _ := newTestPool(t, testenv.Postgres(t), 0, nil)
	migrateTenant(t, src, "tenant_slow")

	app, err := src.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Rollback(ctx)
	var pid int
	if err := app.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := app.QueryRow(ctx, "SELECT count(*) FROM tenant_slow.customers").Scan(&n); err != nil {
		t.Fatal(err)
	}
	c, err := BeginCopy(ctx, src, dst, "tenant_slow")
	if err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := app.Exec(ctx, "INSERT INTO tenant_slow.customers (name, email) VALUES ('late', 'late@example.com')")
		if err == nil {
			err = app.Commit(ctx)
		}
		wrote <- err
	}()
	testenv.WaitFor(t, 30*time.Second, "the write to wait for the copy", func() bool {
		var waiting bool
		err := src.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
			WHERE c.relname = 'customers' AND c.relnamespace = 'tenant_slow'::regnamespace AND NOT l.granted)`).Scan(&waiting)
		return err == nil && waiting
	})
	backend, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := backend.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("stop the write's backend %d: %v", pid, err)
	}
	resumed := make(chan struct{})
	go func() {
		defer close(resumed)
		time.Sleep(500 * time.Millisecond)
		_ = backend.Signal(syscall.SIGCONT)
	}()
	t.Cleanup(func() { <-resumed })

	derr := c.DropSource(ctx)
	werr := <-wrote
	if derr != nil || werr == nil {
		t.Errorf("DropSource: %v; the write: committed %v (err %v); want the source dropped and the write failed", derr, werr == nil, werr)
	}
}
