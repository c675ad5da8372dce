package integration

import (
	"context"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/schema"
)

// TestPgBouncerSearchPath checks the PgBouncer set-up the isolation test
// relies on. PgBouncer 1.18 drops the client's search_path startup
// parameter: without the database default the hardened pool refuses every
// connection (fails closed, rather than running with "$user", public);
// with ALTER DATABASE ... SET search_path to the empty string, the pool connects and its
// sessions have the empty search_path.
func TestPgBouncerSearchPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Two databases on the shared server, behind one PgBouncer.
	plainURL, dbURL := testenv.Postgres(t), testenv.Postgres(t)
	b := startPgBouncer(t, dbURL, 2)

	pool, err := schema.NewPool(ctx, b.url(databaseName(t, plainURL)), schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatalf("new pool: %v", err)
	}
	err = pool.Ping(ctx)
	pool.Close()
	if err == nil || !strings.Contains(err.Error(), "not unpinned") {
		t.Fatalf("pool through PgBouncer without a database default: ping error %v, want the AfterConnect refusal", err)
	}

	emptySearchPathDefault(t, dbURL)
	pool, err = schema.NewPool(ctx, b.url(databaseName(t, dbURL)), schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatalf("new pool: %v", err)
	}
	defer pool.Close()
	var sp string
	if err := pool.QueryRow(ctx, "SELECT pg_catalog.current_setting('search_path')").Scan(&sp); err != nil {
		t.Fatalf("through PgBouncer with the database default: %v", err)
	}
	if sp != `""` {
		t.Fatalf("search_path through PgBouncer = %q, want empty", sp)
	}
}
