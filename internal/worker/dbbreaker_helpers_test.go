package worker_test

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// breakerChain is the worker's middleware chain (worker.MuxOf) over
// DatabaseBreakers, as the database-breaker tests drive it.
type breakerChain struct {
	t        *testing.T
	breakers *worker.DatabaseBreakers
	mux      *asynq.ServeMux
}

// newBreakerChain builds DatabaseBreakers from opts, closed at the end of
// the test, and the chain over them resolving tenants in catalog and
// running handlers. opts.Logger (slog.DiscardHandler when nil) is the
// chain's logger too.
func newBreakerChain(t *testing.T, opts worker.BreakerOptions, catalog storage.TenantStore, handlers map[string]asynq.Handler) *breakerChain {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	b, err := worker.NewDatabaseBreakers(opts)
	if err != nil {
		t.Fatal(err)
	}
	closeBreakers(t, b)
	mux := worker.MuxOf(worker.MuxOptions{Logger: opts.Logger, Catalog: catalog, Breakers: b}, handlers)
	return &breakerChain{t: t, breakers: b, mux: mux}
}

// run runs p's task through the chain.
func (c *breakerChain) run(p tasks.Payload) error {
	c.t.Helper()
	return c.mux.ProcessTask(context.Background(), newTask(c.t, p))
}

// render runs invoice:pdf of invoice 1 of tn through the chain.
func (c *breakerChain) render(tn tenantctx.Tenant) error {
	c.t.Helper()
	return c.run(tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1})
}

// closeBreakers stops b's background probes at the end of the test.
func closeBreakers(t *testing.T, b *worker.DatabaseBreakers) {
	t.Cleanup(func() { _ = b.Close() })
}

// openPool is a schema pool of at most maxConns connections on url,
// closed at the end of the test.
func openPool(t *testing.T, url string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	pool, err := schema.NewPool(t.Context(), url, schema.PoolOptions{MaxConns: maxConns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// newRegistry is placement.New(opts), closed at the end of the test.
func newRegistry(t *testing.T, opts placement.Options) *placement.Registry {
	t.Helper()
	reg := placement.New(opts)
	t.Cleanup(func() { _ = reg.Close() })
	return reg
}

// newTenantCache is the worker's tenant cache over catalog with opts,
// closed at the end of the test.
func newTenantCache(t *testing.T, catalog storage.Catalog, opts storage.CacheOptions) *storage.Cache {
	t.Helper()
	cache := storage.NewCache(catalog, nil, opts)
	t.Cleanup(func() { _ = cache.Close() })
	return cache
}

// stopServer stops srv; it is started again at the end of the test.
func stopServer(t *testing.T, srv *testenv.PostgresServer) {
	t.Helper()
	srv.Stop(t)
	t.Cleanup(func() { srv.Start(t) })
}

// waitRuns waits (up to 30 s) until run succeeds, as a held task does
// once its database is back; run failing (worker.IsFailure) ends the test.
func waitRuns(t *testing.T, what string, run func() error) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, what, func() bool {
		err := run()
		if err != nil && worker.IsFailure(err) {
			t.Fatalf("waiting until %s: the attempt failed: %v", what, err)
		}
		return err == nil
	})
}

// heldTotal is tenantworker_database_held_tasks_total{database=db} as
// metrics gathers it (0 when absent).
func heldTotal(t *testing.T, metrics *prometheus.Registry, db string) float64 {
	t.Helper()
	return testutil.ToFloat64(gatheredGauge(t, metrics, "tenantworker_database_held_tasks_total", db))
}

// startingUp is the error of an attempt or a probe that meets its
// database starting up (57P03): unreachable, not a failure.
func startingUp() *pgconn.PgError {
	return &pgconn.PgError{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"}
}

// failsFirst is an invoice:pdf handler counting its attempts in attempts:
// the first meets its database starting up, the later ones succeed.
func failsFirst(attempts *atomic.Int64) asynq.Handler {
	return worker.Handle(func(context.Context, tasks.InvoicePDF) error {
		if attempts.Add(1) == 1 {
			return startingUp()
		}
		return nil
	})
}

// stopMainUnderALookUp resets catalogPool (no connection open when "main"
// stops), stops mainSrv (started again at the end of the test) and runs
// firstLookUp, a task whose tenant look-up the cache cannot answer: it
// must meet "main" down through its own dial (ErrDatabaseUnavailable, not
// yet held with ErrDatabaseDown).
func stopMainUnderALookUp(t *testing.T, mainSrv *testenv.PostgresServer, catalogPool *pgxpool.Pool, firstLookUp func() error) {
	t.Helper()
	catalogPool.Reset()
	stopServer(t, mainSrv)
	if err := firstLookUp(); !errors.Is(err, worker.ErrDatabaseUnavailable) || errors.Is(err, worker.ErrDatabaseDown) {
		t.Fatalf("first look-up with main stopped: %v; want ErrDatabaseUnavailable from its dial", err)
	}
}
