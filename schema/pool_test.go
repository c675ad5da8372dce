package schema

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tenantctx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func TestNewPoolEmptySearchPath(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	ctx := context.Background()
	pool, err := NewPool(ctx, b.url, PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if got := pool.Config().MaxConns; got != 2 {
		t.Errorf("MaxConns = %d, want 2", got)
	}
	migrateTenant(t, b.pool, "tenant_acme")

	if path, _ := sessionSearchPath(t, pool); !isEmptyPath(path) {
		t.Errorf("SHOW search_path = %q, want empty", path)
	}
	var n int
	err = pool.QueryRow(ctx, "SELECT count(*) FROM invoices").Scan(&n)
	if pgCode(err) != "42P01" || !strings.Contains(err.Error(), `relation "invoices" does not exist`) {
		t.Errorf("unpinned unqualified query: err = %v, want relation does not exist", err)
	}
	// An unqualified CREATE has nowhere to go either.
	_, err = pool.Exec(ctx, "CREATE TABLE stray (id int)")
	if pgCode(err) != "3F000" {
		t.Errorf("unpinned CREATE TABLE: err = %v, want 3F000 no schema selected", err)
	}
	// The qualified name works: the pool is otherwise normal.
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM tenant_acme.customers").Scan(&n); err != nil || n != 1 {
		t.Errorf("qualified query: n = %d, err = %v", n, err)
	}

	if _, err := NewPool(ctx, "postgres://%zz", PoolOptions{}); err == nil {
		t.Error("NewPool with a bad URL: no error")
	}
	if _, err := NewPool(ctx, b.url, PoolOptions{MaxConns: -1}); err == nil {
		t.Error("NewPool with MaxConns -1: no error")
	}
}

// A role default search_path must not silently apply: the startup
// parameter wins, and AfterConnect checks it.
func TestConfigurePoolOverridesRoleDefault(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	ctx := context.Background()
	if _, err := b.pool.Exec(ctx, "CREATE SCHEMA tenant_acme; CREATE TABLE tenant_acme.invoices (id int)"); err != nil {
		t.Fatal(err)
	}
	var db string
	if err := b.pool.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" SET search_path = tenant_acme"); err != nil {
		t.Fatal(err)
	}
	pool, _ := newTestPool(t, b.url, 1, nil)
	if path, _ := sessionSearchPath(t, pool); !isEmptyPath(path) {
		t.Errorf("SHOW search_path = %q, want empty despite the database default", path)
	}
	// A hook that pins the session makes every connection fail.
	bad, _ := newTestPool(t, b.url, 1, func(cfg *pgxpool.Config) {
		cfg.AfterConnect = nil
		ConfigurePool(cfg, nil) // hooks chain: ours runs after this one
		prev := cfg.AfterConnect
		cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
			if _, err := c.Exec(ctx, "SET search_path = tenant_acme"); err != nil {
				return err
			}
			return prev(ctx, c)
		}
	})
	if _, err := bad.Acquire(ctx); err == nil || !strings.Contains(err.Error(), "not unpinned") {
		t.Errorf("acquire from a pool whose connections arrive pinned: err = %v, want refusal", err)
	}
}

// Code other than InTenant that leaves session state behind gets its
// connection destroyed on release; the next user sees an empty path.
func TestAfterReleaseDestroysDirtyConnections(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	migrateTenant(t, b.pool, "tenant_acme")

	for _, tc := range []struct {
		name string
		sql  string
	}{
		{"session SET", "SET search_path = tenant_acme"},
		{"session set_config", "SELECT pg_catalog.set_config('search_path', 'tenant_acme', false)"},
		{"temporary table", "CREATE TEMP TABLE invoices (id int)"},
		{"open transaction", "BEGIN"},
		{"SQL prepared statement", "PREPARE leftover AS SELECT 1"},
		{"session advisory lock", "SELECT pg_catalog.pg_advisory_lock(4243)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, pidBefore := sessionSearchPath(t, b.pool)
			c, err := b.pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(ctx, tc.sql); err != nil {
				t.Fatal(err)
			}
			c.Release()
			path, pid := sessionSearchPath(t, b.pool)
			if !isEmptyPath(path) {
				t.Errorf("search_path after release = %q, want empty", path)
			}
			if pid == pidBefore {
				t.Errorf("dirty connection (pid %d) was reused", pid)
			}
		})
	}
	t.Run("clean connection kept", func(t *testing.T) {
		_, pid1 := sessionSearchPath(t, b.pool)
		_, pid2 := sessionSearchPath(t, b.pool)
		if pid1 != pid2 {
			t.Errorf("clean connection replaced: pid %d -> %d", pid1, pid2)
		}
	})
}

// fn may try to leave its tenant's search_path (or another's) on the
// session; InTenant's end-of-transaction check catches it.
func TestInTenantSessionLeakIsCaught(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	migrateTenant(t, b.pool, "tenant_acme")
	migrateTenant(t, b.pool, "tenant_globex")
	ctx := tenantCtx(context.Background(), "tenant_acme")
	for _, sql := range []string{
		"SET search_path = tenant_acme",
		"SELECT pg_catalog.set_config('search_path', 'tenant_globex', false)",
		"CREATE TEMP TABLE customers (name text)",
	} {
		err := InTenant(ctx, b.pool, func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, sql)
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if path, _ := sessionSearchPath(t, b.pool); !isEmptyPath(path) {
			t.Errorf("after InTenant running %q: search_path = %q, want empty", sql, path)
		}
		var n int
		if err := b.pool.QueryRow(context.Background(), "SELECT count(*) FROM customers").Scan(&n); pgCode(err) != "42P01" {
			t.Errorf("after InTenant running %q: unqualified query err = %v, want 42P01", sql, err)
		}
	}
}

func TestInTenantNoTenantSendsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	for name, ctx := range map[string]context.Context{
		"no tenant":   context.Background(),
		"zero tenant": tenantctx.WithTenant(context.Background(), tenantctx.Tenant{}),
	} {
		called := false
		err := InTenant(ctx, b.pool, func(context.Context, pgx.Tx) error { called = true; return nil })
		if !errors.Is(err, ErrNoTenant) {
			t.Errorf("%s: err = %v, want ErrNoTenant", name, err)
		}
		if called {
			t.Errorf("%s: fn was called", name)
		}
	}
	if n := b.count.total(); n != 0 {
		t.Errorf("%d queries/acquires sent without a tenant, want 0", n)
	}
}

// With default_query_exec_mode=exec (PgBouncer transaction mode) InTenant
// works the same.
func TestInTenantExecMode(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	migrateTenant(t, b.pool, "tenant_acme")
	for _, mode := range []string{"exec", "simple_protocol", "describe_exec"} {
		sep := "?"
		if strings.Contains(b.url, "?") {
			sep = "&"
		}
		pool, _ := newTestPool(t, b.url+sep+"default_query_exec_mode="+mode, 1, nil)
		var names []string
		err := InTenant(tenantCtx(context.Background(), "tenant_acme"), pool, func(ctx context.Context, tx pgx.Tx) error {
			var err error
			names, err = customerNames(ctx, tx)
			return err
		})
		if err != nil || len(names) != 1 || names[0] != "tenant_acme" {
			t.Errorf("mode %s: names %v, err %v", mode, names, err)
		}
		if path, _ := sessionSearchPath(t, pool); !isEmptyPath(path) {
			t.Errorf("mode %s: search_path after = %q", mode, path)
		}
	}
}

// TestInTenantEarlyEndThenConnIsChecked: fn that ends its transaction
// itself (tx.Commit) and then goes on running statements, through the raw
// connection or a savepoint begun before, runs them outside any
// transaction. The check of that early end does not vouch for them: the
// release checks the connection again and destroys it, so the next user
// of the pool never gets a session search_path pinned to a tenant.
func TestInTenantEarlyEndThenConnIsChecked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		fn   func(ctx context.Context, tx pgx.Tx) error
	}{
		{"raw connection", func(ctx context.Context, tx pgx.Tx) error {
			if err := tx.Commit(ctx); err != nil {
				return err
			}
			_, err := tx.Conn().Exec(ctx, "SET search_path TO tenant_globex")
			return err
		}},
		{"savepoint", func(ctx context.Context, tx pgx.Tx) error {
			sp, err := tx.Begin(ctx)
			if err != nil {
				return err
			}
			if err := tx.Commit(ctx); err != nil {
				return err
			}
			_, err = sp.Exec(ctx, "SET search_path TO tenant_globex")
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 1)
			ctx := context.Background()
			migrateTenant(t, b.pool, "tenant_acme")
			migrateTenant(t, b.pool, "tenant_globex")
			if err := InTenant(tenantCtx(ctx, "tenant_acme"), b.pool, tc.fn); !errors.Is(err, pgx.ErrTxClosed) {
				t.Errorf("InTenant = %v, want ErrTxClosed (fn ended the transaction)", err)
			}
			c, err := b.pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Release()
			var path string
			if err := c.QueryRow(ctx, "SHOW search_path").Scan(&path); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(ctx, "SELECT name FROM customers"); !isEmptyPath(path) || err == nil {
				t.Errorf("the next user of the pool got search_path %q, and an unpinned query ran (%v)", path, err)
			}
		})
	}
}

func TestInTenantTxLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	migrateTenant(t, b.pool, "tenant_acme")
	ctx := tenantCtx(context.Background(), "tenant_acme")

	// fn ending the transaction itself: reported like pgx.BeginFunc does.
	err := InTenant(ctx, b.pool, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO customers (name, email) VALUES ('early', 'e@x')")
		if err != nil {
			return err
		}
		return tx.Rollback(ctx)
	})
	if !errors.Is(err, pgx.ErrTxClosed) {
		t.Errorf("fn rolled back itself: err = %v, want ErrTxClosed", err)
	}

	// A swallowed error makes COMMIT a rollback.
	err = InTenant(ctx, b.pool, func(ctx context.Context, tx pgx.Tx) error {
		_, _ = tx.Exec(ctx, "INSERT INTO customers (name, email) VALUES ('swallowed', 'e@x')")
		_, _ = tx.Exec(ctx, "SELECT 1/0")
		return nil
	})
	if !errors.Is(err, pgx.ErrTxCommitRollback) {
		t.Errorf("swallowed error: err = %v, want ErrTxCommitRollback", err)
	}

	// A kept tx refuses use after fn returned.
	var kept pgx.Tx
	if err := InTenant(ctx, b.pool, func(_ context.Context, tx pgx.Tx) error { kept = tx; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := kept.Exec(context.Background(), "SELECT 1"); !errors.Is(err, pgx.ErrTxClosed) {
		t.Errorf("Exec after fn: %v", err)
	}
	if _, err := kept.Query(context.Background(), "SELECT 1"); !errors.Is(err, pgx.ErrTxClosed) {
		t.Errorf("Query after fn: %v", err)
	}
	var one int
	if err := kept.QueryRow(context.Background(), "SELECT 1").Scan(&one); !errors.Is(err, pgx.ErrTxClosed) {
		t.Errorf("QueryRow after fn: %v", err)
	}
	if err := kept.SendBatch(context.Background(), &pgx.Batch{}).Close(); !errors.Is(err, pgx.ErrTxClosed) {
		t.Errorf("SendBatch after fn: %v", err)
	}
	if _, err := kept.Begin(context.Background()); !errors.Is(err, pgx.ErrTxClosed) {
		t.Errorf("Begin after fn: %v", err)
	}
	if err := kept.Commit(context.Background()); !errors.Is(err, pgx.ErrTxClosed) {
		t.Errorf("Commit after fn: %v", err)
	}

	// Savepoints work inside fn, with the pin.
	err = InTenant(ctx, b.pool, func(ctx context.Context, tx pgx.Tx) error {
		sp, err := tx.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := sp.Exec(ctx, "INSERT INTO customers (name, email) VALUES ('savepoint', 'e@x')"); err != nil {
			return err
		}
		return sp.Rollback(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}

	var names []string
	err = InTenant(ctx, b.pool, func(ctx context.Context, tx pgx.Tx) error {
		names, err = customerNames(ctx, tx)
		return err
	})
	if err != nil || len(names) != 1 || names[0] != "tenant_acme" {
		t.Errorf("after early rollback, swallowed error and savepoint rollback: names %v, err %v; want only tenant_acme", names, err)
	}
}

// TestConfigurePoolBoundsConnecting: without connect_timeout in the URL a
// pool gives up opening a connection after DefaultConnectTimeout (a server
// that accepts and never answers would otherwise hold its callers for
// ever); a connect_timeout in the URL is kept.
func TestConfigurePoolBoundsConnecting(t *testing.T) {
	t.Parallel()
	for url, want := range map[string]time.Duration{
		"postgres://u@127.0.0.1:1/db":                   DefaultConnectTimeout,
		"postgres://u@127.0.0.1:1/db?connect_timeout=3": 3 * time.Second,
	} {
		cfg, err := pgxpool.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		ConfigurePool(cfg, nil)
		if got := cfg.ConnConfig.ConnectTimeout; got != want {
			t.Errorf("%s: ConnectTimeout %v, want %v", url, got, want)
		}
	}
}

// ctxRecorder is a slog handler that keeps, for each record, the message
// and the holderKey value of the ctx it was logged with.
type ctxRecorder struct {
	mu   sync.Mutex
	seen []string
}

type holderKey struct{}

func (h *ctxRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *ctxRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *ctxRecorder) WithGroup(string) slog.Handler            { return h }
func (h *ctxRecorder) Handle(ctx context.Context, r slog.Record) error {
	v, _ := ctx.Value(holderKey{}).(string)
	h.mu.Lock()
	h.seen = append(h.seen, r.Message+" holder="+v)
	h.mu.Unlock()
	return nil
}

// recordingPool is a configured pool of one connection on a PostgreSQL
// of its own, whose logger records into the returned ctxRecorder. The
// caller closes it.
func recordingPool(t *testing.T) (*pgxpool.Pool, *ctxRecorder) {
	t.Helper()
	rec := &ctxRecorder{}
	cfg, err := pgxpool.ParseConfig(testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	ConfigurePool(cfg, slog.New(rec))
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return pool, rec
}

// What the pool logs when it destroys a released connection is logged
// with the ctx that acquired the connection, so a logger that reads a
// task's attributes from the ctx (internal/logctx) names the task whose
// code left the connection dirty; pgx's AfterRelease has no ctx of its
// own. A connection acquired by another ctx afterwards logs with that one.
func TestReleaseWarningCarriesTheHolderCtx(t *testing.T) {
	t.Parallel()
	pool, rec := recordingPool(t)
	defer pool.Close()
	for _, holder := range []string{"task-1", "task-2"} {
		ctx := context.WithValue(context.Background(), holderKey{}, holder)
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "SET search_path = public"); err != nil {
			t.Fatal(err)
		}
		c.Release()
	}
	// A clean release logs nothing, and a later warning does not reuse a
	// holder's ctx.
	if err := pool.QueryRow(context.Background(), "SELECT 1").Scan(new(int)); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := []string{
		"schema: destroying released connection that could not be proven clean holder=task-1",
		"schema: destroying released connection that could not be proven clean holder=task-2",
	}
	if !slices.Equal(rec.seen, want) {
		t.Errorf("logged %q, want %q", rec.seen, want)
	}
}

// A connection released inside a transaction is destroyed (it is not idle)
// and, like one that could not be proven clean, logged with the ctx that
// acquired it: pgx destroys it in Release without calling AfterRelease, so
// the warning must not depend on AfterRelease. The destruction of a clean
// connection (the pool's Close) logs nothing.
func TestNotIdleReleaseWarningIsLogged(t *testing.T) {
	t.Parallel()
	pool, rec := recordingPool(t)
	ctx := context.WithValue(context.Background(), holderKey{}, "task-tx")
	c, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pid := c.Conn().PgConn().PID()
	if _, err := c.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	c.Release()
	// The next acquire gets another connection once the first is gone.
	var next uint32
	if err := pool.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&next); err != nil {
		t.Fatal(err)
	}
	if next == pid {
		t.Fatalf("connection released inside a transaction (pid %d) was reused", pid)
	}
	pool.Close()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := []string{"schema: destroying released connection that is not idle holder=task-tx"}
	if !slices.Equal(rec.seen, want) {
		t.Errorf("logged %q, want %q", rec.seen, want)
	}
}

// TestParseConfigRefusesAnUnencodedAtInTheAuthority: pgx splits a URL's
// authority at its first '@', and a password holding one made the rest of
// it the host, which every dial error then quoted ("lookup tPW@db: no
// such host"). ParseConfig, which every pool and `enqueue db add` parse
// with, refuses it with the fix and nothing of the password.
func TestParseConfigRefusesAnUnencodedAtInTheAuthority(t *testing.T) {
	t.Parallel()
	_, err := ParseConfig("postgres://app:s3cr@tPW@db.internal/inv")
	if err == nil || !strings.Contains(err.Error(), "%40") || strings.Contains(err.Error(), "tPW") || strings.Contains(err.Error(), "s3cr") {
		t.Fatalf("ParseConfig: error %v, want one saying to percent-encode '@' as %%40 without the password", err)
	}
	if _, err := ParseConfig("postgres://app:s3cr%40tPW@db.internal/inv"); err != nil {
		t.Fatal(err)
	}
}
