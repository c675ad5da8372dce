package testenv_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestLockWaitersCountsOnlyItsOwnDatabase: a session waiting for a lock in
// another database of the shared server (another test's) is in pg_locks
// for every database to see, but LockWaiters does not count it; one of
// its own database waiting on a row (a transaction id wait, which pg_locks
// gives no database) it counts, by the kind and the statement asked for.
func TestLockWaitersCountsOnlyItsOwnDatabase(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	urlA, urlB := testenv.Postgres(t), testenv.Postgres(t)
	a := connect(t, ctx, urlA)

	// waitBehind starts stmt on a connection of its own to url while holder
	// (on another) holds what it needs, and waits until url's database
	// counts it; the returned func ends the holder's transaction and waits
	// for stmt.
	waitBehind := func(url string, holder *pgx.Conn, hold, stmt, kind string) func() {
		t.Helper()
		tx, err := holder.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, hold); err != nil {
			t.Fatal(err)
		}
		waiter := connect(t, ctx, url)
		done := make(chan error, 1)
		go func() {
			_, err := waiter.Exec(ctx, stmt)
			done <- err
		}()
		monitor := connect(t, ctx, url)
		testenv.WaitFor(t, time.Minute, stmt+" to wait", func() bool {
			n, err := testenv.LockWaiters(ctx, monitor, stmt, kind)
			if err != nil {
				t.Fatal(err)
			}
			return n == 1
		})
		return func() {
			t.Helper()
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
	}

	release := waitBehind(urlB, connect(t, ctx, urlB), "SELECT pg_advisory_xact_lock(4711)", "SELECT pg_advisory_xact_lock(4711)", "advisory")
	var elsewhere int
	if err := a.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE NOT granted").Scan(&elsewhere); err != nil {
		t.Fatal(err)
	}
	if elsewhere == 0 {
		t.Fatal("pg_locks does not show the other database's waiter: the test shows nothing")
	}
	if n, err := testenv.LockWaiters(ctx, a, ""); err != nil || n != 0 {
		t.Errorf("LockWaiters in a database where nothing waits = %d, %v; want 0 (another database's waiter counted)", n, err)
	}

	if _, err := a.Exec(ctx, "CREATE TABLE rows (id int); INSERT INTO rows VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	const update = "UPDATE rows SET id = 2"
	releaseA := waitBehind(urlA, connect(t, ctx, urlA), update, update, "transactionid")
	for _, c := range []struct {
		stmt  string
		kinds []string
		want  int
	}{
		{"", nil, 1},
		{update, []string{"transactionid", "tuple"}, 1},
		{"UPDATE other", nil, 0},
		{update, []string{"advisory"}, 0},
	} {
		if n, err := testenv.LockWaiters(ctx, a, c.stmt, c.kinds...); err != nil || n != c.want {
			t.Errorf("LockWaiters(%q, %q) = %d, %v; want %d", c.stmt, c.kinds, n, err, c.want)
		}
	}
	releaseA()
	release()
}
