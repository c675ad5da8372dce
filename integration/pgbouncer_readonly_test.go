package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/schema"
)

// TestPgBouncerStaleReadOnlyReportKeepsConnections: PgBouncer hands every
// client the parameters its pool's first server connection reported, so
// once that connection was made while the database was read-only
// (default_transaction_read_only, or a failover's standby), every client
// connection says default_transaction_read_only on for as long as
// PgBouncer runs, whatever its servers say now. The pool asks the server,
// when a connection so reported is made, and keeps one whose server takes
// writes: writes on a pool of 2 for longer than its 5 s for a read-only
// connection dial at most 2 connections. Trusting the report, it closed
// every connection once 5 s old, and then dialed again at nearly every use
// (at every one before that lifetime existed), for ever.
func TestPgBouncerStaleReadOnlyReportKeepsConnections(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := testenv.Postgres(t)
	emptySearchPathDefault(t, dbURL)
	name := databaseName(t, dbURL)
	admin, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	alter := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" "+sql); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.Exec(ctx, "CREATE TABLE public.written (n int)"); err != nil {
		t.Fatal(err)
	}

	// PgBouncer's first server connection made while the database is
	// read-only: its report is what every client gets from now on.
	alter("SET default_transaction_read_only = on")
	b := startPgBouncer(t, dbURL, 2)
	first, err := pgx.Connect(ctx, b.url(name))
	if err != nil {
		t.Fatal(err)
	}
	_ = first.Close(ctx)
	alter("RESET default_transaction_read_only")
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name); err != nil {
		t.Fatal(err)
	}
	// pg_terminate_backend only signals: until the backend has exited and
	// PgBouncer has seen its server connection close, PgBouncer may still
	// hand that connection to the pool below, whose first statement then
	// fails with 57P01 (it did, on a loaded machine).
	eventually(t, 30*time.Second, 20*time.Millisecond, "read-only server connections gone", func() error {
		var left int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name).Scan(&left); err != nil {
			return err
		}
		if left > 0 {
			return fmt.Errorf("%d backend(s) of %s still running", left, name)
		}
		pids, err := b.servers(ctx, name)
		if err != nil {
			return err
		}
		if len(pids) > 0 {
			return fmt.Errorf("PgBouncer still holds server connection(s) %v", pids)
		}
		return nil
	})

	pool, err := schema.NewPool(ctx, b.url(name), schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	c, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reported := c.Conn().PgConn().ParameterStatus("default_transaction_read_only")
	c.Release()
	if reported != "on" {
		t.Fatalf("PgBouncer reports default_transaction_read_only %q, want the stale on this test is about", reported)
	}

	before := pool.Stat().NewConnsCount()
	writes := 0
	// Longer than the 5 s after which a read-only connection is closed.
	for start := time.Now(); time.Since(start) < 7*time.Second; writes++ {
		if _, err := pool.Exec(ctx, "INSERT INTO public.written VALUES (1)"); err != nil {
			t.Fatalf("write %d through PgBouncer: %v", writes+1, err)
		}
	}
	if dialed := pool.Stat().NewConnsCount() - before; dialed > 2 {
		t.Errorf("%d writes through PgBouncer to a database that takes writes dialed %d connections, want at most 2 (the pool's)", writes, dialed)
	}
}
