package schema

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestConnectionEndedByAShortIdleSessionTimeoutIsNotUsed: a server whose
// idle_session_timeout an operator set below a second ends a pooled
// connection idle that long; pgxpool checks an idle connection with a
// ping on acquire only after a second idle, so the next use met the
// ended session (SQLSTATE 57P05), which the worker counts as its database
// unavailable (and opens its breaker). The pool pings a connection idle
// for half the server's timeout, and takes another when the ping fails.
func TestConnectionEndedByAShortIdleSessionTimeoutIsNotUsed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, err := url.Parse(testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("idle_session_timeout", "300") // milliseconds
	u.RawQuery = q.Encode()
	pool, err := NewPool(ctx, u.String(), PoolOptions{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	watch, err := NewPool(ctx, testenv.Postgres(t), PoolOptions{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(watch.Close)
	for round := range 3 {
		var pid int
		if err := pool.QueryRow(ctx, "SELECT pg_catalog.pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		// The server ends the pooled session once it has been idle for
		// its timeout; the pool's next use comes right after, well within
		// pgxpool's own second.
		testenv.WaitFor(t, 30*time.Second, "the server to end the idle session", func() bool {
			var alive bool
			if err := watch.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_catalog.pg_stat_activity WHERE pid = $1)", pid).Scan(&alive); err != nil {
				t.Fatal(err)
			}
			return !alive
		})
		var one int
		if err := pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			t.Fatalf("round %d: first use after the server ended the idle session: %v; want a fresh connection", round, err)
		}
	}
}
