package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// middleware is scenario 1: drain the same pre-enqueued tasks with an
// asynq server configured like the worker (worker.ServerConfig: queues
// 6/3/1, default concurrency) twice per round: once with a no-op handler
// and no middleware, once through the worker's production chain
// (worker.Chain: envelope, recover, log, metrics, refusal, tenant
// resolution on the cached Postgres catalog) and the decoding adapter into
// a handler that runs SELECT 1 as a unit of work pinned to the tenant in
// one round trip (schema.InTenantBatch).
// Four diagnostic variants run in every round too: the chain with a no-op
// handler, with one unpinned SELECT 1 (on a plain pgx pool, and on the
// hardened pool, whose release then runs the full clean-connection check),
// and with SELECT 1 pinned by schema.InTenant (three round trips). The
// variants take turns within each round, in reverse order every other
// round, so drift on a noisy machine hits all alike.
func (b *bench) middleware(ctx context.Context, s *Scenario) error {
	c, err := b.openCore(ctx)
	if err != nil {
		return err
	}
	n := b.sz.MiddlewareN
	s.Sizes["tenants"] = len(c.tenants)
	s.Sizes["tasks_per_round"] = n
	s.Sizes["rounds"] = b.sz.Rounds
	s.Sizes["warmup_tasks"] = b.sz.WarmN
	s.Sizes["concurrency"] = worker.DefaultConcurrency
	s.Sizes["pool_conns"] = benchPoolConns

	cache := storage.NewCache(c.pg, b.env.rdb, storage.CacheOptions{})
	defer cache.Close()
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer devNull.Close()
	// The task log as in production: JSON at info, one write per line.
	taskLog := slog.New(slog.NewJSONHandler(devNull, nil))
	metrics, err := worker.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		return err
	}

	probe, err := b.newCPUProbe(ctx, c)
	if err != nil {
		return fmt.Errorf("cpu probe: %w", err)
	}
	d := &drainer{b: b, tenants: c.tenantIDs(), probe: probe}
	bare := asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		d.finished()
		return nil
	})
	chain := worker.Chain(worker.MuxOptions{Logger: taskLog, Metrics: metrics, Catalog: cache})
	chainOnly := asynq.NewServeMux()
	chainOnly.Use(chain...)
	chainOnly.Handle(tasks.TypeInvoicePDF, worker.Handle(func(context.Context, tasks.InvoicePDF) error {
		d.finished()
		return nil
	}))
	// The unpinned SELECT 1 runs on a plain pgx pool: one round trip and
	// nothing else. On the hardened pool (schema.NewPool) a bare query's
	// release runs the full clean-connection check (a second round trip,
	// reading the session's prepared statements and the server's lock
	// table), which a unit of work does not pay; that is the second row.
	rawCfg, err := pgxpool.ParseConfig(c.url)
	if err != nil {
		return err
	}
	rawCfg.MaxConns = benchPoolConns
	rawPool, err := pgxpool.NewWithConfig(ctx, rawCfg)
	if err != nil {
		return err
	}
	defer rawPool.Close()
	selectOne := func(pool *pgxpool.Pool) asynq.Handler {
		mux := asynq.NewServeMux()
		mux.Use(chain...)
		mux.Handle(tasks.TypeInvoicePDF, worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
			var one int
			if err := pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
				return err
			}
			d.finished()
			return nil
		}))
		return mux
	}
	unpinned, unpinnedHardened := selectOne(rawPool), selectOne(c.pool)
	// The pinned unit of work: one round trip (schema.InTenantBatch).
	mux := asynq.NewServeMux()
	mux.Use(chain...)
	mux.Handle(tasks.TypeInvoicePDF, worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
		var b pgx.Batch
		var one int
		b.Queue("SELECT 1").QueryRow(func(row pgx.Row) error { return row.Scan(&one) })
		if err := schema.InTenantBatch(ctx, c.pool, &b); err != nil {
			return err
		}
		d.finished()
		return nil
	}))
	// The same with schema.InTenant: three round trips.
	inTenant := asynq.NewServeMux()
	inTenant.Use(chain...)
	inTenant.Handle(tasks.TypeInvoicePDF, worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
		err := schema.InTenant(ctx, c.pool, func(ctx context.Context, tx pgx.Tx) error {
			var one int
			return tx.QueryRow(ctx, "SELECT 1").Scan(&one)
		})
		if err != nil {
			return err
		}
		d.finished()
		return nil
	}))

	progress("middleware: warm-up (%d tasks each)", b.sz.WarmN)
	for _, h := range []asynq.Handler{bare, chainOnly, unpinned, unpinnedHardened, inTenant, mux} {
		if _, _, err := d.drain(ctx, h, b.sz.WarmN); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	var bareRounds, chainRounds, noDBRounds, unpinnedRounds, hardenedRounds, inTenantRounds []float64
	var bareCPU, chainCPU, noDBCPU, unpinnedCPU, hardenedCPU, inTenantCPU cpuUse
	variants := []struct {
		name   string
		h      asynq.Handler
		rounds *[]float64
		cpu    *cpuUse
	}{
		{"bare", bare, &bareRounds, &bareCPU},
		{"middleware-only", chainOnly, &noDBRounds, &noDBCPU},
		{"unpinned", unpinned, &unpinnedRounds, &unpinnedCPU},
		{"unpinned on the hardened pool", unpinnedHardened, &hardenedRounds, &hardenedCPU},
		{"InTenant", inTenant, &inTenantRounds, &inTenantCPU},
		{"middleware", mux, &chainRounds, &chainCPU},
	}
	for r := range b.sz.Rounds {
		// Every other round runs the variants in reverse order, so that a
		// drift of the machine's speed within a round (a neighbour's job
		// starting) does not always favour the same ones.
		order := slices.Clone(variants)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, v := range order {
			rate, use, err := d.drain(ctx, v.h, n)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", v.name, r+1, err)
			}
			*v.rounds, *v.cpu = append(*v.rounds, rate), v.cpu.add(use)
		}
		progress("middleware: round %d: bare %.0f tasks/s, middleware only %.0f, + unpinned SELECT 1 %.0f (on the hardened pool %.0f), + InTenant SELECT 1 %.0f, + InTenantBatch SELECT 1 %.0f", r+1, bareRounds[r], noDBRounds[r], unpinnedRounds[r], hardenedRounds[r], inTenantRounds[r], chainRounds[r])
	}
	b.bareDrain = median(bareRounds)
	st := cache.Stats()
	drain := s.add("drain", median(chainRounds), "tasks/s").withRounds(chainRounds).
		against("bare asynq, no-op handler", b.bareDrain, "tasks/s", bareRounds).
		target(">=", 0.85, true, "ratio >= 0.85")
	if drain.Ratio != nil {
		b.pinnedRatio = *drain.Ratio
	}
	s.add("diagnostic: middleware only (no DB)", median(noDBRounds), "tasks/s").withRounds(noDBRounds).
		against("bare asynq, no-op handler", b.bareDrain, "tasks/s", nil)
	s.add("diagnostic: middleware + unpinned SELECT 1", median(unpinnedRounds), "tasks/s").withRounds(unpinnedRounds).
		against("bare asynq, no-op handler", b.bareDrain, "tasks/s", nil)
	s.add("diagnostic: middleware + unpinned SELECT 1 on the hardened pool (its release runs the full clean-connection check)", median(hardenedRounds), "tasks/s").withRounds(hardenedRounds).
		against("bare asynq, no-op handler", b.bareDrain, "tasks/s", nil)
	s.add("diagnostic: middleware + SELECT 1 pinned by schema.InTenant (3 round trips)", median(inTenantRounds), "tasks/s").withRounds(inTenantRounds).
		against("bare asynq, no-op handler", b.bareDrain, "tasks/s", nil)
	total := n * b.sz.Rounds
	perTaskAll := func(u cpuUse) float64 { return perTask(u.total(), total) }
	addCPURows(s, bareCPU, chainCPU, inTenantCPU, total)
	s.note("CPU per task over all rounds (bench process from getrusage: it runs the asynq server and the handlers; servers from /proc/<pid>/stat, PostgreSQL including every backend): bare: %s; middleware only: %s; + unpinned SELECT 1: %s; + unpinned SELECT 1 on the hardened pool: %s; + InTenant SELECT 1: %s; + InTenantBatch SELECT 1: %s",
		bareCPU.summary(total), noDBCPU.summary(total), unpinnedCPU.summary(total), hardenedCPU.summary(total), inTenantCPU.summary(total), chainCPU.summary(total))
	if pinnedCPU := perTaskAll(chainCPU); pinnedCPU > 0 {
		atTarget := 0.85 * b.bareDrain // tasks/s
		need := atTarget * pinnedCPU / 1e6 / float64(runtime.NumCPU())
		s.note("at 0.85 of bare (%.0f tasks/s) the pinned chain's %.0f µs of CPU per task (%s) would keep %.0f%% of the %d CPUs busy; the measured rounds kept %.0f%% busy",
			atTarget, pinnedCPU, chainCPU.parts(), 100*need, runtime.NumCPU(), 100*chainCPU.busyShare())
	}
	s.note("diagnostics: the same chain with a handler that does nothing, and with a plain pool.QueryRow(\"SELECT 1\") (one round trip, no transaction, no pin, on a pgx pool without release checks): they separate the middleware's cost from the database's and the pinning protocol's; the same query on the hardened pool adds the release's full clean-connection check that units of work replace with their own")
	s.note("tenant cache during the run: %d local hits, %d Redis hits, %d catalog queries", st.LocalHits, st.RedisHits, st.Misses)
	s.note("chain is worker.Chain, the worker's own (metrics included), with the JSON task log written to /dev/null; drain timed from Server.Start to the last handler return")
	s.Bound = "bare asynq: 2 Redis round trips per task (dequeue script, done script) issued by one serial dequeue loop, so it is bound by round-trip latency and leaves about a third of the CPUs idle (CPU note). " +
		"The middleware alone (recover, JSON log line, metrics, in-process tenant lookup) adds about 20 µs of CPU per task and stays close to bare. " +
		"One PostgreSQL round trip per task and nothing else (the unpinned SELECT 1 on a plain pool) adds CPU in the worker (pgx, the wake-up after the reply), in the backend and in slower Redis replies on the same CPUs: it is the ceiling for any handler that queries the database once per task. " +
		"The pinned unit (schema.InTenantBatch) is one round trip too, with five statements (BEGIN, the pin with its owner check and the deadline, the query, COMMIT, the clean-connection check) and 55-90 µs more of PostgreSQL CPU per task in four runs. " +
		"schema.InTenant takes three round trips (BEGIN with the pin, the query, COMMIT with the check), its pin and check prepared like InTenantBatch's. " +
		"On the hardened pool a bare query's release runs the full clean-connection check (the session's prepared statements and the server's lock table), which units of work replace with their own"
	return nil
}

// drainer enqueues batches of tasks and times a server draining them.
type drainer struct {
	b       *bench
	tenants []string
	probe   *cpuProbe
	seq     atomic.Int64 // invoice ids, unique across rounds

	left   atomic.Int64
	doneCh chan struct{}

	// configure, when set, adjusts the drain server's asynq.Config before
	// it starts: a test hook (TestDrainReportsFailedAttempts retries a
	// failed attempt at once instead of after the worker's backoff).
	configure func(*asynq.Config)
}

// finished counts one handled task.
func (d *drainer) finished() {
	if d.left.Add(-1) == 0 {
		close(d.doneCh)
	}
}

// drain enqueues n invoice:pdf-shaped tasks round-robin over the tenants
// (no task id, no retention: both servers delete them when done), then
// starts a server with handler h and returns tasks/s from Start to the
// n-th completion, and the CPU spent meanwhile.
func (d *drainer) drain(ctx context.Context, h asynq.Handler, n int) (float64, cpuUse, error) {
	client := asynq.NewClientFromRedisClient(d.b.env.rdb)
	g, gctx := errgroup.WithContext(ctx)
	const producers = 16
	for w := range producers {
		g.Go(func() error {
			for i := w; i < n; i += producers {
				id := d.seq.Add(1)
				payload, _ := json.Marshal(tasks.InvoicePDF{TenantID: d.tenants[i%len(d.tenants)], InvoiceID: id})
				if _, err := client.EnqueueContext(gctx, asynq.NewTask(tasks.TypeInvoicePDF, payload),
					asynq.Queue(tasks.QueueDefault), asynq.MaxRetry(1)); err != nil {
					return fmt.Errorf("enqueue: %w", err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, cpuUse{}, err
	}

	errs := &errorLog{}
	d.left.Store(int64(n))
	d.doneCh = make(chan struct{})
	cfg := worker.ServerConfig(worker.ServerOptions{Logger: slog.New(errs)})
	if d.configure != nil {
		d.configure(&cfg)
	}
	srv := asynq.NewServerFromRedisClient(d.b.env.rdb, cfg)
	before, err := d.probe.sample()
	if err != nil {
		return 0, cpuUse{}, fmt.Errorf("cpu sample: %w", err)
	}
	// Every failed attempt counts: a retried one is logged below warn
	// (and the chain's task log goes to /dev/null), so the server's log
	// does not show it.
	var failed atomic.Int64
	var firstFail atomic.Value
	counted := asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		err := h.ProcessTask(ctx, t)
		if err != nil && failed.Add(1) == 1 {
			firstFail.Store(err.Error())
		}
		return err
	})
	start := time.Now()
	if err := srv.Start(counted); err != nil {
		return 0, cpuUse{}, fmt.Errorf("start server: %w", err)
	}
	timeout := time.Minute + time.Duration(n)*time.Millisecond
	var elapsed time.Duration
	var after cpuSample
	var sampleErr error
	select {
	case <-d.doneCh:
		elapsed = time.Since(start)
		after, sampleErr = d.probe.sample()
	case <-time.After(timeout):
	case <-ctx.Done():
	}
	srv.Shutdown()
	if err := ctx.Err(); err != nil {
		return 0, cpuUse{}, err
	}
	if elapsed == 0 {
		return 0, cpuUse{}, fmt.Errorf("%d of %d tasks not done after %s; errors: %s", d.left.Load(), n, timeout, errs.summary())
	}
	if n := failed.Load(); n > 0 {
		return 0, cpuUse{}, fmt.Errorf("%d failed task attempts during the drain, first: %v", n, firstFail.Load())
	}
	if msg := errs.summary(); msg != "" {
		return 0, cpuUse{}, fmt.Errorf("task errors during the drain: %s", msg)
	}
	if sampleErr != nil {
		return 0, cpuUse{}, fmt.Errorf("cpu sample: %w", sampleErr)
	}
	return float64(n) / elapsed.Seconds(), after.since(before), nil
}

// tenantIDs returns the ids of the core tenants.
func (c *coreDB) tenantIDs() []string {
	ids := make([]string, len(c.tenants))
	for i, t := range c.tenants {
		ids[i] = t.ID
	}
	return ids
}

// addCPURows adds the middleware scenario's CPU-per-task rows: bare asynq,
// the pinned chain and the chain with InTenant, over total tasks each.
func addCPURows(s *Scenario, bare, pinned, inTenant cpuUse, total int) {
	// Each row names the processes it sums: a server the bench cannot
	// see (REDIS_URL, DATABASE_URL) is left out, not counted as 0.
	perTaskAll := func(u cpuUse) float64 { return perTask(u.total(), total) }
	s.add(fmt.Sprintf("diagnostic: CPU per task, bare asynq (%s)", bare.parts()), perTaskAll(bare), "µs")
	s.add(fmt.Sprintf("diagnostic: CPU per task, + pinned SELECT 1 (%s)", pinned.parts()), perTaskAll(pinned), "µs").
		against(fmt.Sprintf("bare asynq, no-op handler (%s)", bare.parts()), perTaskAll(bare), "µs", nil)
	s.add(fmt.Sprintf("diagnostic: CPU per task, + SELECT 1 pinned by InTenant (%s)", inTenant.parts()), perTaskAll(inTenant), "µs").
		against(fmt.Sprintf("bare asynq, no-op handler (%s)", bare.parts()), perTaskAll(bare), "µs", nil)
	if pinned.postgresMeasured {
		s.add("diagnostic: of which PostgreSQL server", perTask(pinned.postgres, total), "µs")
	}
}
