package schema

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

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
	w := startWaitedWrite(t, "tenant_acme", "written after the switch")
	// The switch happened; the source goes.
	derr := w.copied.DropSource(ctx)
	werr := <-w.wrote
	var inSource, inCopy int
	_ = w.src.QueryRow(ctx, "SELECT count(*) FROM tenant_acme.customers WHERE name = 'written after the switch'").Scan(&inSource)
	_ = w.dst.QueryRow(ctx, "SELECT count(*) FROM tenant_acme.customers WHERE name = 'written after the switch'").Scan(&inCopy)
	if derr != nil || werr == nil {
		t.Errorf("DropSource: %v; the write that waited for the copy: committed %v (err %v), %d rows of it in the source, %d in the copy; "+
			"want the source dropped and the write failed", derr, werr == nil, werr, inSource, inCopy)
	}
}

// TestDropSourceDeadlockAsNonSuperuser: the cancellation of the deadlocked
// write (pg_cancel_backend, pg_stat_activity) works for production's role,
// one that owns each database and is not superuser, when the write comes
// from that role too; source and target belong to two such roles.
func TestDropSourceDeadlockAsNonSuperuser(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := startWaitedWriteOn(t, testenv.PostgresAs(t, true), testenv.PostgresAs(t, true), "tenant_acme", "written after the switch")
	derr := w.copied.DropSource(ctx)
	werr := <-w.wrote
	if derr != nil || werr == nil {
		t.Errorf("DropSource: %v; the write: committed %v (err %v); want the source dropped and the write failed", derr, werr == nil, werr)
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
	w := startWaitedWrite(t, "tenant_slow", "late")
	backend, err := os.FindProcess(w.pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := backend.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("stop the write's backend %d: %v", w.pid, err)
	}
	resumed := make(chan struct{})
	go func() {
		defer close(resumed)
		time.Sleep(500 * time.Millisecond)
		_ = backend.Signal(syscall.SIGCONT)
	}()
	t.Cleanup(func() { <-resumed })

	derr := w.copied.DropSource(ctx)
	werr := <-w.wrote
	if derr != nil || werr == nil {
		t.Errorf("DropSource: %v; the write: committed %v (err %v); want the source dropped and the write failed", derr, werr == nil, werr)
	}
}

// waitedWrite is a tenant's schema being copied and a transaction of the
// application that read one of its tables before the copy and then wrote
// it: the write waits for the copy's lock (startWaitedWrite).
type waitedWrite struct {
	src, dst *pgxpool.Pool
	copied   *Copied
	pid      int          // the application transaction's backend
	wrote    <-chan error // the write's and its commit's outcome
}

// startWaitedWrite migrates schemaName on a source database, begins the
// application's transaction (a read of customers), copies the schema to a
// second database, and starts the write of a customer named name, which
// waits for the copy; it returns once the write waits.
func startWaitedWrite(t *testing.T, schemaName, name string) waitedWrite {
	t.Helper()
	return startWaitedWriteOn(t, testenv.Postgres(t), testenv.Postgres(t), schemaName, name)
}

// startWaitedWriteOn is startWaitedWrite with the source and target
// databases at srcURL and dstURL; the application's transaction logs in
// with srcURL's role, as the copy does.
func startWaitedWriteOn(t *testing.T, srcURL, dstURL, schemaName, name string) waitedWrite {
	t.Helper()
	src, _ := newTestPool(t, srcURL, 0, nil)
	migrateTenant(t, src, schemaName)
	return startWaitedWriteAs(t, src, "", dstURL, schemaName, name)
}

// startWaitedWriteAs is startWaitedWriteOn on src, with schemaName
// migrated there already, and the application's transaction logged in at
// appURL ("": from src).
func startWaitedWriteAs(t *testing.T, src *pgxpool.Pool, appURL, dstURL, schemaName, name string) waitedWrite {
	t.Helper()
	ctx := context.Background()
	w := waitedWrite{src: src}
	w.dst, _ = newTestPool(t, dstURL, 0, nil)
	appPool := src
	if appURL != "" {
		appPool, _ = newTestPool(t, appURL, 0, nil)
	}
	app, err := appPool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Rollback(ctx) })
	if err := app.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&w.pid); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := app.QueryRow(ctx, "SELECT count(*) FROM "+schemaName+".customers").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if w.copied, err = BeginCopy(ctx, w.src, w.dst, schemaName); err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	w.wrote = wrote
	go func() {
		_, err := app.Exec(ctx, "INSERT INTO "+schemaName+".customers (name, email) VALUES ($1, 'lost@example.com')", name)
		if err == nil {
			err = app.Commit(ctx)
		}
		wrote <- err
	}()
	testenv.WaitFor(t, 30*time.Second, "the write to wait for the copy", func() bool {
		var waiting bool
		err := w.src.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
			WHERE c.relname = 'customers' AND c.relnamespace = $1::regnamespace AND NOT l.granted)`, schemaName).Scan(&waiting)
		return err == nil && waiting
	})
	return w
}
