package schema

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tenantctx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// counter is a pgx tracer counting queries and pool acquires: a function
// that sent no query and acquired no connection sent no SQL at all.
type counter struct {
	queries  atomic.Int64
	acquires atomic.Int64
}

func (c *counter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.queries.Add(1)
	return ctx
}
func (c *counter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *counter) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	c.acquires.Add(1)
	return ctx
}
func (c *counter) TraceAcquireEnd(context.Context, *pgxpool.Pool, pgxpool.TraceAcquireEndData) {}

// total is every query and acquire seen so far.
func (c *counter) total() int64 { return c.queries.Load() + c.acquires.Load() }

// bundle is what setup gives a test.
type bundle struct {
	url   string
	pool  *pgxpool.Pool
	count *counter
}

// setup returns a hardened pool of maxConns (0 = default) on a fresh
// database, with a counting tracer.
func setup(t testing.TB, maxConns int32) bundle {
	t.Helper()
	url := testenv.Postgres(t)
	pool, count := newTestPool(t, url, maxConns, nil)
	return bundle{url: url, pool: pool, count: count}
}

// newTestPool builds a pool like NewPool, plus a tracer and optional
// config changes.
func newTestPool(t testing.TB, url string, maxConns int32, edit func(*pgxpool.Config)) (*pgxpool.Pool, *counter) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	ConfigurePool(cfg, nil)
	count := &counter{}
	cfg.ConnConfig.Tracer = count
	if edit != nil {
		edit(cfg)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, count
}

// tenantCtx returns a context carrying a tenant whose schema is schemaName.
func tenantCtx(ctx context.Context, schemaName string) context.Context {
	id := strings.ReplaceAll(strings.TrimPrefix(schemaName, "tenant_"), "_", "-")
	return tenantctx.WithTenant(ctx, tenantctx.Tenant{
		ID: "tn_" + id, Slug: id, Name: schemaName, Status: tenantctx.StatusActive, Schema: schemaName,
	})
}

// migrateTenant migrates schemaName to the latest version and adds one
// customer named after the schema.
func migrateTenant(t testing.TB, pool *pgxpool.Pool, schemaName string) {
	t.Helper()
	ctx := context.Background()
	if _, err := Migrate(ctx, pool, schemaName, 0); err != nil {
		t.Fatal(err)
	}
	err := InTenant(tenantCtx(ctx, schemaName), pool, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO customers (name, email) VALUES ($1, $2)", schemaName, schemaName+"@example.com")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// sessionSearchPath acquires a connection outside any transaction and
// returns its search_path and backend pid.
func sessionSearchPath(t testing.TB, pool *pgxpool.Pool) (string, uint32) {
	t.Helper()
	c, err := pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	var path string
	if err := c.QueryRow(context.Background(), "SHOW search_path").Scan(&path); err != nil {
		t.Fatal(err)
	}
	return path, c.Conn().PgConn().PID()
}

// isEmptyPath reports whether a SHOW search_path answer is the empty list.
func isEmptyPath(p string) bool { return p == "" || p == `""` }

// pgCode returns the SQLSTATE of err, or "".
func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// customerNames reads every customer name of the tenant in ctx.
func customerNames(ctx context.Context, tx pgx.Tx) ([]string, error) {
	rows, err := tx.Query(ctx, "SELECT name FROM customers ORDER BY id")
	if err != nil {
		return nil, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("collect: %w", err)
	}
	return names, nil
}
