package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// fairness is scenario 7: fair dispatch (package fair) measured against
// the plain path (tasks straight into asynq, first come first served) in
// the same run.
//
//  1. A quiet tenant's PDF wait (enqueue to "task finished") while a noisy
//     tenant has FairBacklog renders waiting, through the real cmd/worker;
//     the same with FAIR_DISPATCH=false (FIFO) beside it.
//  2. Throughput cost: no-op tasks through the worker's production chain
//     (in process) and PDF bursts through cmd/worker, fair vs plain.
//  3. Shares of worker time (in process, tasks that take a set time): 10
//     tenants with equal demand (Jain's index), 3 tenants of weights
//     1/2/4, and a tenant whose tasks take 10x longer.
//  4. Idle pickup: enqueue to handler start on an idle system, and the
//     Redis commands per second an idle worker costs.
//  5. Dispatch latency (one enqueue, one completion report) with 10 and
//     with 10,000 tenants holding backlogs; Redis memory per waiting task.
func (b *bench) fairness(ctx context.Context, s *Scenario) error {
	core, err := b.openCore(ctx)
	if err != nil {
		return err
	}
	// The scenario's own tenants, in the core database: 2 for the quiet
	// and noisy pair, 10 for the bursts, 15 for the shares, 1 idle.
	progress("fairness: seeding %d tenants", fairTenants)
	ft, err := seedActiveTenants(ctx, core.pool, core.pg, "fair", fairTenants, false)
	if err != nil {
		return err
	}
	c := &coreDB{url: core.url, pool: core.pool, pg: core.pg, tenants: ft}
	s.Sizes["noisy_backlog"] = b.sz.FairBacklog
	s.Sizes["tenants"] = len(c.tenants)
	cache := storage.NewCache(c.pg, b.env.rdb, storage.CacheOptions{})
	defer cache.Close()

	if err := b.fairQuietLatency(ctx, s, c); err != nil {
		return fmt.Errorf("quiet tenant latency: %w", err)
	}
	if err := b.fairPDFThroughput(ctx, s, c); err != nil {
		return fmt.Errorf("pdf throughput: %w", err)
	}
	if err := b.fairNoopThroughput(ctx, s, c, cache); err != nil {
		return fmt.Errorf("no-op throughput: %w", err)
	}
	if err := b.fairShares(ctx, s, c, cache); err != nil {
		return fmt.Errorf("shares: %w", err)
	}
	if err := b.fairIdle(ctx, s, c, cache); err != nil {
		return fmt.Errorf("idle pickup: %w", err)
	}
	if err := b.fairDispatchScaling(ctx, s); err != nil {
		return fmt.Errorf("dispatch scaling: %w", err)
	}
	s.Bound = "fair dispatch adds Redis work per task (the backlog push at enqueue, the admission into asynq's pending list, and a batched completion report that frees the slot, charges the measured cost and refills), all in Lua scripts on the queue's keys; " +
		"asynq's own dequeue loop stays serial, so the added work costs throughput mainly where Redis or the CPUs are the bottleneck. A quiet tenant's wait is bounded by the pending depth the dispatcher keeps (about one task per live worker slot) and, for an idle worker, how soon the dispatcher's announcement wakes it (worker.IdleWait)"
	return nil
}

// fairTenants is how many tenants the scenario seeds.
const fairTenants = 30

// fairEnqueuer returns an Enqueuer with fair admission over the bench's
// Redis, tenants resolved through cache.
func (b *bench) fairEnqueuer(cache *storage.Cache, cfg fair.Config) (*tasks.Enqueuer, *fair.Dispatcher) {
	d := fair.New(b.env.rdb, cfg)
	client := asynq.NewClientFromRedisClient(b.env.rdb)
	inspector := asynq.NewInspectorFromRedisClient(b.env.rdb)
	return tasks.NewEnqueuer(client, inspector, quietLogger(),
		tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: cache})), d
}

// fairQuietLatency is part 1.
func (b *bench) fairQuietLatency(ctx context.Context, s *Scenario, c *coreDB) error {
	noisy, quiet := c.tenants[0], c.tenants[1]
	n := b.sz.FairBacklog
	progress("fairness: seeding %d one-line invoices for the noisy tenant", n)
	if _, err := c.pg.SetLimits(ctx, noisy.ID, "", tenantctx.Limits{MaxWaiting: n + 1000}); err != nil {
		return err
	}
	ids, err := seedTenantInvoices(ctx, c.pool, noisy.Tenant, n, 1)
	if err != nil {
		return err
	}
	quietIDs, err := seedTenantInvoices(ctx, c.pool, quiet.Tenant, 400, 10)
	if err != nil {
		return err
	}
	samples := b.sz.FairQuietSamples
	var fairLat, fifoLat, fairLater []time.Duration
	var fairFirst time.Duration
	var fifoBacklog int
	for _, mode := range []string{"fair", "fifo"} {
		if err := b.env.flushRedis(ctx); err != nil {
			return err
		}
		env := b.workerEnv(c.url, "fairness-"+mode)
		env["FAIR_DISPATCH"] = strconv.FormatBool(mode == "fair")
		// The tenants were seeded, not provisioned: make their document
		// directories as their tenant:migrate would have.
		if err := prepareDocuments(ctx, env["DOCUMENTS_DIR"], noisy.ID, quiet.ID); err != nil {
			return err
		}
		w, err := b.startWorkerEnv(ctx, "fairness-"+mode, env)
		if err != nil {
			return err
		}
		inspector := asynq.NewInspectorFromRedisClient(b.env.rdb)
		enq, closeEnq := b.modeEnqueuer(c, mode == "fair")
		defer closeEnq()
		progress("fairness: %s: noisy backlog of %d renders", mode, n)
		if err := enqueueBulk(ctx, enq, noisy.ID, ids); err != nil {
			w.stop()
			return err
		}
		// FIFO: each quiet render waits for the backlog ahead of it, so a
		// few samples tell; fair: samples at an even pace.
		k := samples
		if mode == "fifo" {
			k = 3
			if q, err := inspector.GetQueueInfo(tasks.QueueDefault); err == nil {
				fifoBacklog = q.Pending
			}
		}
		mark := w.tracker.mark()
		sent := map[string]time.Time{}
		var firstID string
		for i := range k {
			p := tasks.InvoicePDF{TenantID: quiet.ID, InvoiceID: quietIDs[i%len(quietIDs)]}
			if mode == "fifo" {
				p.InvoiceID = quietIDs[len(quietIDs)-1-i]
			}
			at := time.Now()
			res, err := enq.Enqueue(ctx, p)
			if err != nil {
				w.stop()
				return err
			}
			sent[res.Info.ID] = at
			if i == 0 {
				firstID = res.Info.ID
			}
			time.Sleep(100 * time.Millisecond)
		}
		timeout := time.Minute + time.Duration(n)*5*time.Millisecond
		err = w.waitFor(ctx, timeout, 20*time.Millisecond, "quiet renders ("+mode+")", func() (bool, error) {
			// The noisy tenant's renders too: a failing one frees its slot
			// at once and shortens the quiet tenant's wait.
			if _, failed := w.tracker.count(0, tasks.TypeInvoicePDF); failed > 0 {
				return false, fmt.Errorf("%d invoice:pdf attempts did not succeed\n%s", failed, w.logTail())
			}
			qw, err := quietWaits(w.tracker.since(mark), sent, firstID)
			return qw.done >= len(sent), err
		})
		if err == nil {
			qw, _ := quietWaits(w.tracker.since(mark), sent, firstID)
			if mode == "fair" {
				fairLat, fairLater, fairFirst = qw.lat, qw.later, qw.first
			} else {
				fifoLat = qw.lat
			}
		}
		w.stop()
		if err != nil {
			return err
		}
	}
	s.add("quiet tenant PDF wait p50, noisy backlog (fair)", millis(percentile(fairLat, 50)), "ms").
		against("FIFO (FAIR_DISPATCH=false), same backlog, p50", millis(percentile(fifoLat, 50)), "ms", nil)
	s.add("quiet tenant PDF wait p99, noisy backlog (fair)", millis(percentile(fairLat, 99)), "ms").
		target("<", 250, false, "p99 < 250 ms")
	// The quiet tenant's first task on the worker pays what is per tenant
	// and not there yet (each backend's first touch of its tables; its
	// document directories are made beforehand, as provisioning makes
	// them): with few samples it is the p99 above.
	s.add("diagnostic: quiet tenant's first PDF wait (its first task on the worker)", millis(fairFirst), "ms")
	s.add("diagnostic: quiet tenant PDF wait p99 of the later samples", millis(percentile(fairLater, 99)), "ms")
	s.note("part 1: the noisy tenant's %d renders (one-line invoices) were enqueued in batches of %d before the quiet tenant's; %d quiet renders (10 lines) 100 ms apart; wait = enqueue to the worker's \"task finished\" line; both tenants' document directories made before the worker started, as provisioning makes them; FIFO: %d quiet renders behind %d pending",
		n, tasks.MaxBatch, len(fairLat), len(fifoLat), fifoBacklog)
	return nil
}

// quietWaitsResult is what quietWaits found.
type quietWaitsResult struct {
	done       int
	lat, later []time.Duration // sorted
	first      time.Duration
}

// quietWaits returns how many of the quiet renders in sent (task id ->
// enqueue time) finished among events, and their waits: all, all but
// firstID's, and firstID's.
func quietWaits(events []finish, sent map[string]time.Time, firstID string) (quietWaitsResult, error) {
	var r quietWaitsResult
	seen := map[string]bool{}
	for _, f := range events {
		if at, ok := sent[f.TaskID]; ok {
			if f.Outcome != "ok" {
				return r, fmt.Errorf("quiet render %s: attempt ended %q: %s", f.TaskID, f.Outcome, f.Error)
			}
			if seen[f.TaskID] {
				continue // a second run of the same task: its first finish counts
			}
			seen[f.TaskID] = true
			r.done++
			r.lat = append(r.lat, f.At.Sub(at))
			if f.TaskID == firstID {
				r.first = f.At.Sub(at)
			} else {
				r.later = append(r.later, f.At.Sub(at))
			}
		}
	}
	slices.Sort(r.lat)
	slices.Sort(r.later)
	return r, nil
}

// enqueueBulk enqueues renders of ids for tenant in batches of
// tasks.MaxBatch on 4 goroutines.
func enqueueBulk(ctx context.Context, enq *tasks.Enqueuer, tenantID string, ids []int64) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for lo := 0; lo < len(ids); lo += tasks.MaxBatch {
		batch := ids[lo:min(lo+tasks.MaxBatch, len(ids))]
		g.Go(func() error {
			ps := make([]tasks.Payload, len(batch))
			for i, id := range batch {
				ps[i] = tasks.InvoicePDF{TenantID: tenantID, InvoiceID: id}
			}
			_, err := enq.EnqueueMany(gctx, tenantID, ps)
			return err
		})
	}
	return g.Wait()
}

// modeEnqueuer returns the plain Enqueuer, or with fairMode an Enqueuer with
// fair admission (default configuration) that resolves tenants through a
// cache over c's catalog, and what closes it.
func (b *bench) modeEnqueuer(c *coreDB, fairMode bool) (*tasks.Enqueuer, func()) {
	if !fairMode {
		return b.plainEnqueuer()
	}
	return b.workerEnqueuer(c.pg)
}

// fairPDFThroughput is part 2 on PDFs: bursts through cmd/worker, fair
// and plain alternating.
func (b *bench) fairPDFThroughput(ctx context.Context, s *Scenario, c *coreDB) error {
	tenants := c.tenants[2:12]
	per := b.sz.FairPDFBurst / len(tenants)
	progress("fairness: seeding %d invoices for the pdf bursts", per*len(tenants)*b.sz.Rounds*2)
	ids := make([][]int64, len(tenants))
	for i, t := range tenants {
		var err error
		if ids[i], err = seedTenantInvoices(ctx, c.pool, t.Tenant, per*b.sz.Rounds*2, pdfLines); err != nil {
			return err
		}
	}
	// The tenants were seeded, not provisioned: make their document
	// directories as their tenant:migrate would have. Otherwise the first
	// burst's renders make them (directories and their fsyncs), and that
	// burst alone pays for them.
	docsDir := b.workerEnv(c.url, "fairness-burst")["DOCUMENTS_DIR"]
	tenantIDs := make([]string, len(tenants))
	for i, t := range tenants {
		tenantIDs[i] = t.ID
	}
	if err := prepareDocuments(ctx, docsDir, tenantIDs...); err != nil {
		return err
	}
	var fairRounds, plainRounds []float64
	next := make([]int, len(tenants))
	for r := range b.sz.Rounds {
		// Each mode goes first in every other round, so neither always
		// meets the machine (and the worker's first burst) first.
		for _, mode := range burstModes(r) {
			if err := b.env.flushRedis(ctx); err != nil {
				return err
			}
			env := b.workerEnv(c.url, "fairness-burst")
			env["FAIR_DISPATCH"] = strconv.FormatBool(mode == "fair")
			w, err := b.startWorkerEnv(ctx, fmt.Sprintf("fairness-burst-%s-%d", mode, r+1), env)
			if err != nil {
				return err
			}
			enq, closeEnq := b.modeEnqueuer(c, mode == "fair")
			defer closeEnq()
			mark := w.tracker.mark()
			start := time.Now()
			g, gctx := errgroup.WithContext(ctx)
			for i, t := range tenants {
				batch := ids[i][next[i] : next[i]+per]
				next[i] += per
				g.Go(func() error { return enqueueBulk(gctx, enq, t.ID, batch) })
			}
			if err := g.Wait(); err != nil {
				w.stop()
				return err
			}
			total := per * len(tenants)
			err = w.waitFor(ctx, 5*time.Minute, 10*time.Millisecond, "pdf burst ("+mode+")", func() (bool, error) {
				got, failed := w.tracker.count(mark, tasks.TypeInvoicePDF)
				if failed > 0 {
					return false, fmt.Errorf("%d renders failed\n%s", failed, w.logTail())
				}
				return got >= total, nil
			})
			elapsed := time.Since(start)
			w.stop()
			if err != nil {
				return err
			}
			rate := float64(total) / elapsed.Seconds()
			if mode == "fair" {
				fairRounds = append(fairRounds, rate)
			} else {
				plainRounds = append(plainRounds, rate)
			}
			progress("fairness: round %d: pdf burst %s %.0f/s", r+1, mode, rate)
		}
	}
	s.add("pdf burst throughput, fair dispatch", median(fairRounds), "tasks/s").withRounds(fairRounds).
		against("plain path (FAIR_DISPATCH=false)", median(plainRounds), "tasks/s", plainRounds).
		target(">=", 0.97, true, "cost <= 3%")
	s.note("part 2 (pdf): %d renders of %d-line invoices over %d tenants per burst, enqueued in batches, through one cmd/worker (concurrency %d), fair and plain alternating, each first in every other round; the tenants' document directories made before the first burst, as provisioning makes them", per*len(tenants), pdfLines, len(tenants), 10)
	return nil
}

// burstModes is the order of part 2's PDF bursts in round r (from 0):
// plain first in even rounds, fair first in odd ones.
func burstModes(r int) []string {
	if r%2 == 1 {
		return []string{"fair", "plain"}
	}
	return []string{"plain", "fair"}
}

// fairNoopThroughput is part 2 on no-op tasks, in process: the worker's
// production chain (and, fair, its reporter and heartbeat) with a no-op
// handler. End to end: producers enqueue while the server runs, timed from
// the first enqueue to the last task handled, so each path pays all of its
// own work (the plain path its enqueue script, fair dispatch its backlog,
// admission and completion report). A diagnostic row drains tasks
// enqueued beforehand, which leaves the plain path's enqueue out.
func (b *bench) fairNoopThroughput(ctx context.Context, s *Scenario, c *coreDB, cache *storage.Cache) error {
	n := b.sz.MiddlewareN
	tenants := c.tenantIDs()[2:12]
	per := n / len(tenants)
	var seq atomic.Int64
	enqueueAll := func(ctx context.Context, enq *tasks.Enqueuer) error {
		g, gctx := errgroup.WithContext(ctx)
		for _, id := range tenants {
			g.Go(func() error {
				for i := 0; i < per; i += 50 {
					ps := make([]tasks.Payload, 0, 50)
					for j := i; j < min(i+50, per); j++ {
						ps = append(ps, tasks.InvoicePDF{TenantID: id, InvoiceID: seq.Add(1)})
					}
					if _, err := enq.EnqueueMany(gctx, id, ps); err != nil {
						return err
					}
				}
				return nil
			})
		}
		return g.Wait()
	}
	noop := func(context.Context, tasks.InvoicePDF) error { return nil }
	// The modes, run in turn in every round. A drain mode enqueues
	// everything before the worker starts (its enqueue not timed); a
	// dedicated worker serves only the class with the work
	// (WORKER_QUEUE_CLASSES=default): no polls of empty queues.
	dedicated := []string{tasks.QueueDefault}
	modes := []struct {
		name    string
		fair    bool
		drain   bool
		classes []string
	}{
		{name: "plain"}, {name: "fair", fair: true},
		{name: "plain-drain", drain: true}, {name: "fair-drain", fair: true, drain: true},
		{name: "plain-dedicated", classes: dedicated}, {name: "fair-dedicated", fair: true, classes: dedicated},
	}
	rounds := map[string][]float64{}
	for r := range b.sz.Rounds + 1 { // the first round warms up
		for _, m := range modes {
			if err := b.env.flushRedis(ctx); err != nil {
				return err
			}
			var enq *tasks.Enqueuer
			var d *fair.Dispatcher
			if m.fair {
				enq, d = b.fairEnqueuer(cache, fair.Config{})
			} else {
				enq, _ = b.plainEnqueuer()
			}
			var rate float64
			var err error
			if m.drain {
				if err = enqueueAll(ctx, enq); err == nil {
					rate, err = b.drainChain(ctx, cache, d, m.classes, per*len(tenants), nil, noop)
				}
			} else {
				rate, err = b.drainChain(ctx, cache, d, m.classes, per*len(tenants), func(ctx context.Context) error { return enqueueAll(ctx, enq) }, noop)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			if r > 0 {
				rounds[m.name] = append(rounds[m.name], rate)
				progress("fairness: round %d: no-op %s %.0f/s", r, m.name, rate)
			}
		}
	}
	s.add("no-op tasks end to end (enqueue and run) through the production chain, fair dispatch", median(rounds["fair"]), "tasks/s").withRounds(rounds["fair"]).
		against("plain path", median(rounds["plain"]), "tasks/s", rounds["plain"]).
		target(">=", 0.97, true, "cost <= 3%")
	s.add("diagnostic: no-op drain of tasks enqueued beforehand, fair dispatch", median(rounds["fair-drain"]), "tasks/s").withRounds(rounds["fair-drain"]).
		against("plain path (its enqueue not timed)", median(rounds["plain-drain"]), "tasks/s", rounds["plain-drain"])
	s.add("diagnostic: no-op tasks end to end, a worker serving the default class only, fair dispatch", median(rounds["fair-dedicated"]), "tasks/s").withRounds(rounds["fair-dedicated"]).
		against("plain path, the same worker", median(rounds["plain-dedicated"]), "tasks/s", rounds["plain-dedicated"])
	s.add("diagnostic: the same, plain path, against a worker serving every class", median(rounds["plain-dedicated"]), "tasks/s").
		against("plain path, every class", median(rounds["plain"]), "tasks/s", nil)
	// The machine's speed drifts between rounds by more than the
	// dispatcher's cost; the two dedicated modes run back to back in every
	// round, so the ratio of each round's pair drifts less than the ratio
	// of the medians above.
	var paired []float64
	for i, f := range rounds["fair-dedicated"] {
		if p := rounds["plain-dedicated"]; i < len(p) && p[i] > 0 {
			paired = append(paired, f/p[i])
		}
	}
	s.add("diagnostic: fair over plain, both serving the default class only, median of the rounds' back-to-back pairs", median(paired), "ratio").withRounds(paired)
	s.note("part 2 (no-op): %d tasks over %d tenants per round (producers enqueue batches of 50 per tenant), in process: worker.Chain (envelope, cost report, recover, log to /dev/null, tenant resolution over the cached catalog) and a no-op handler, concurrency %d; the fair modes' server runs as cmd/worker does with fair dispatch (worker.IdleWait: it waits for announcements when idle, and a queue it found empty is not asked again for TASK_CHECK_INTERVAL unless work is announced there), the plain modes' as without it (asking every queue in turn); the dedicated modes serve only default, so they compare the dispatcher's own cost without empty queues", per*len(tenants), len(tenants), worker.DefaultConcurrency)
	return nil
}

// drainChain runs an in-process asynq server with the worker's chain
// (with d's reporter, parking and heartbeat when d is set) and handler,
// serving classes (nil: every class, as worker.ServerOptions.Classes),
// until n tasks were handled, and returns tasks/s from its start.
func (b *bench) drainChain(ctx context.Context, cache *storage.Cache, d *fair.Dispatcher, classes []string, n int, produce func(context.Context) error, handler func(context.Context, tasks.InvoicePDF) error) (float64, error) {
	var left atomic.Int64
	left.Store(int64(n))
	done := make(chan struct{})
	log := slog.New(slog.DiscardHandler)
	opts := worker.MuxOptions{Logger: log, Catalog: cache}
	var rep *fair.Reporter
	if d != nil {
		rep = d.NewReporter(log)
		opts.Reporter, opts.Parker = rep, d
	}
	mux := asynq.NewServeMux()
	mux.Use(worker.Chain(opts)...)
	var failed atomic.Int64
	mux.Handle(tasks.TypeInvoicePDF, worker.Handle(func(ctx context.Context, p tasks.InvoicePDF) error {
		if err := handler(ctx, p); err != nil {
			return err // not done: its retry is
		}
		if left.Add(-1) == 0 {
			close(done)
		}
		return nil
	}))
	counted := asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		err := mux.ProcessTask(ctx, t)
		if err != nil {
			failed.Add(1)
		}
		return err
	})
	errs := &errorLog{}
	sopts := worker.ServerOptions{Logger: slog.New(errs), Classes: classes}
	srv, stopServer, err := b.asynqServer(sopts, d != nil)
	if err != nil {
		return 0, err
	}
	mctx, stopMember := context.WithCancel(ctx)
	var member sync.WaitGroup
	start := time.Now()
	if d != nil {
		member.Go(func() {
			d.Serve(mctx, fair.Membership{ID: "bench", Queues: sopts.ServedQueues(), Concurrency: worker.DefaultConcurrency, Interval: 200 * time.Millisecond}, log)
		})
	}
	if err := srv.Start(counted); err != nil {
		stopMember()
		stopServer()
		return 0, err
	}
	produced := make(chan error, 1)
	if produce != nil {
		start = time.Now()
		go func() { produced <- produce(ctx) }()
	} else {
		produced <- nil
	}
	var elapsed time.Duration
	select {
	case <-done:
		elapsed = time.Since(start)
	case <-time.After(2*time.Minute + time.Duration(n)*time.Millisecond):
	case <-ctx.Done():
	}
	stopServer()
	stopMember()
	member.Wait()
	if rep != nil {
		rep.Close(context.WithoutCancel(ctx))
	}
	if err := <-produced; err != nil {
		return 0, fmt.Errorf("enqueue: %w", err)
	}
	if elapsed == 0 {
		return 0, fmt.Errorf("%d of %d tasks not done; errors: %s", left.Load(), n, errs.summary())
	}
	if f := failed.Load(); f > 0 {
		return 0, fmt.Errorf("%d failed task attempts", f)
	}
	if msg := errs.summary(); msg != "" {
		return 0, fmt.Errorf("task errors: %s", msg)
	}
	return float64(n) / elapsed.Seconds(), nil
}

// asynqServer returns an in-process asynq server configured by opts as
// cmd/worker runs it: announced (fair dispatch), it waits for the
// dispatcher's announcements (worker.IdleWait), on a Redis client of its
// own since the waiter's hook stays on the client it is added to;
// otherwise it polls, on the bench's client. stop shuts it down.
func (b *bench) asynqServer(opts worker.ServerOptions, announced bool) (srv *asynq.Server, stop func(), err error) {
	if !announced {
		srv = asynq.NewServerFromRedisClient(b.env.rdb, worker.ServerConfig(opts))
		return srv, srv.Shutdown, nil
	}
	rdb, ok := b.env.redisOpt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, nil, fmt.Errorf("unsupported redis connection %T", b.env.redisOpt)
	}
	opts, _, stopIdle := worker.IdleWait(rdb, opts, 0)
	srv = asynq.NewServerFromRedisClient(rdb, worker.ServerConfig(opts))
	return srv, func() {
		stopIdle()
		srv.Shutdown()
		_ = rdb.Close()
	}, nil
}

// fairShares is part 3.
func (b *bench) fairShares(ctx context.Context, s *Scenario, c *coreDB, cache *storage.Cache) error {
	type group struct {
		name    string
		tenants []benchTenant
		weights []int
		cost    []time.Duration
	}
	base := 5 * time.Millisecond
	groups := []group{
		{name: "equal", tenants: c.tenants[12:22], weights: []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, cost: repeatDur(base, 10)},
		{name: "weights", tenants: c.tenants[22:25], weights: []int{1, 2, 4}, cost: repeatDur(base, 3)},
		{name: "slow", tenants: c.tenants[25:27], weights: []int{1, 1}, cost: []time.Duration{10 * base, base}},
	}
	window := b.sz.FairShareWindow
	for _, g := range groups {
		if err := b.env.flushRedis(ctx); err != nil {
			return err
		}
		for i, t := range g.tenants {
			if _, err := c.pg.SetLimits(ctx, t.ID, "", tenantctx.Limits{Weight: g.weights[i], MaxRunning: 100, MaxWaiting: 200_000}); err != nil {
				return err
			}
		}
		enq, d := b.fairEnqueuer(cache, fair.Config{})
		costOf := map[string]time.Duration{}
		for i, t := range g.tenants {
			costOf[t.ID] = g.cost[i]
		}
		// Enough backlog that nobody runs dry within the window.
		capacity := int(window/base) * worker.DefaultConcurrency
		var seq atomic.Int64
		for _, t := range g.tenants {
			need := capacity * 2 / len(g.tenants)
			ps := make([]tasks.Payload, 0, need)
			for range need {
				ps = append(ps, tasks.InvoicePDF{TenantID: t.ID, InvoiceID: seq.Add(1)})
			}
			for lo := 0; lo < len(ps); lo += tasks.MaxBatch {
				if _, err := enq.EnqueueMany(ctx, t.ID, ps[lo:min(lo+tasks.MaxBatch, len(ps))]); err != nil {
					return err
				}
			}
		}
		var mu sync.Mutex
		spent := map[string]time.Duration{}
		var measuring atomic.Bool
		var measured atomic.Int64
		firstRun := make(chan struct{})
		var firstOnce sync.Once
		handler := func(ctx context.Context, p tasks.InvoicePDF) error {
			firstOnce.Do(func() { close(firstRun) })
			// The worker time a task took, as the dispatcher measures it:
			// on a loaded machine a sleep overruns its nominal length.
			start := time.Now()
			time.Sleep(costOf[p.TenantID])
			if measuring.Load() {
				d := time.Since(start)
				mu.Lock()
				spent[p.TenantID] += d
				mu.Unlock()
				measured.Add(1)
			}
			return nil
		}
		// The window opens window/5 after the first task started (past the
		// start-up, however long that took) and closes after window, once
		// at least one task was measured in it: on a loaded machine a short
		// window can otherwise pass with none, and the shares are 0/0. The
		// server runs until the window closed.
		wctx, closeWindow := context.WithCancel(ctx)
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			select {
			case <-firstRun:
			case <-wctx.Done():
				return
			}
			time.Sleep(window / 5)
			measuring.Store(true)
			time.Sleep(window)
			for measured.Load() == 0 && wctx.Err() == nil {
				time.Sleep(time.Millisecond)
			}
			measuring.Store(false)
		}()
		err := b.runFor(ctx, cache, d, closed, handler)
		closeWindow()
		<-closed
		if err != nil {
			return err
		}
		mu.Lock()
		shares := make([]float64, len(g.tenants))
		var total float64
		for i, t := range g.tenants {
			shares[i] = spent[t.ID].Seconds()
			total += shares[i]
		}
		mu.Unlock()
		switch g.name {
		case "equal":
			var sum, sq float64
			for _, x := range shares {
				sum += x
				sq += x * x
			}
			jain := sum * sum / (float64(len(shares)) * sq)
			s.add("Jain's fairness index of worker time, 10 tenants with equal demand", jain, "index").
				target(">=", 0.99, false, ">= 0.99")
		case "weights":
			worst := 0.0
			for i, w := range g.weights {
				want := total * float64(w) / 7
				worst = math.Max(worst, math.Abs(shares[i]-want)/want)
			}
			s.add("weights 1/2/4: largest deviation of a tenant's worker-time share from its weight", 100*worst, "%").
				target("<", 5, false, "within 5%")
			s.note("part 3 (weights 1/2/4): worker seconds %.2f / %.2f / %.2f", shares[0], shares[1], shares[2])
		case "slow":
			dev := math.Abs(shares[0]-shares[1]) / ((shares[0] + shares[1]) / 2)
			s.add("10x slower tasks: deviation of the slow tenant's worker time from an equal share", 100*dev/2, "%").
				target("<", 10, false, "within 10%")
			s.note("part 3 (10x slower): worker seconds slow %.2f, fast %.2f", shares[0], shares[1])
		}
		for _, t := range g.tenants {
			if _, err := d.Drain(ctx, t.ID, tasks.Queues...); err != nil {
				return err
			}
		}
	}
	s.note("part 3: in process, the worker's chain and heartbeat, concurrency %d, handlers that take %v (the slow tenant's %v); shares counted over %v (or until a task ended in it) from %v after the first task started",
		worker.DefaultConcurrency, base, 10*base, window, window/5)
	return nil
}

func repeatDur(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

// runFor runs the in-process chain with handler until until is closed.
func (b *bench) runFor(ctx context.Context, cache *storage.Cache, disp *fair.Dispatcher, until <-chan struct{}, handler func(context.Context, tasks.InvoicePDF) error) error {
	log := slog.New(slog.DiscardHandler)
	rep := disp.NewReporter(log)
	mux := asynq.NewServeMux()
	mux.Use(worker.Chain(worker.MuxOptions{Logger: log, Catalog: cache, Reporter: rep, Parker: disp})...)
	mux.Handle(tasks.TypeInvoicePDF, worker.Handle(handler))
	srv, stopServer, err := b.asynqServer(worker.ServerOptions{Logger: log}, true)
	if err != nil {
		return err
	}
	mctx, stop := context.WithCancel(ctx)
	var member sync.WaitGroup
	member.Go(func() {
		disp.Serve(mctx, fair.Membership{ID: "bench", Queues: tasks.Queues, Concurrency: worker.DefaultConcurrency, Interval: 200 * time.Millisecond}, log)
	})
	if err := srv.Start(mux); err != nil {
		stop()
		stopServer()
		return err
	}
	select {
	case <-until:
	case <-ctx.Done():
	}
	stopServer()
	stop()
	member.Wait()
	rep.Close(context.WithoutCancel(ctx))
	return ctx.Err()
}

// fairIdle is part 4: the worker's idle cost and pickup latency, first
// polling every TASK_CHECK_INTERVAL (the worker without fair dispatch, or
// with its subscription down), then waiting for the dispatcher's
// announcements (worker.IdleWait, as cmd/worker runs with fair dispatch).
func (b *bench) fairIdle(ctx context.Context, s *Scenario, c *coreDB, cache *storage.Cache) error {
	type result struct {
		rate     float64
		p50, p99 time.Duration
	}
	var got [2]result
	idleFor := 5 * time.Second
	for k, announced := range []bool{false, true} {
		rate, lat, err := b.fairIdleRound(ctx, c, cache, announced, idleFor)
		if err != nil {
			return err
		}
		got[k] = result{rate: rate, p50: percentile(lat, 50), p99: percentile(lat, 99)}
	}
	poll, wait := got[0], got[1]
	s.add("idle pickup p50 (enqueue to handler start)", millis(wait.p50), "ms").target("<", 20, false, "p50 < 20 ms")
	s.add("idle pickup p99", millis(wait.p99), "ms").target("<", 100, false, "p99 < 100 ms")
	s.add("Redis commands per second, one idle worker", wait.rate, "commands/s")
	s.add("idle pickup p50, polling (diagnostic)", millis(poll.p50), "ms")
	s.add("idle pickup p99, polling (diagnostic)", millis(poll.p99), "ms")
	s.add("Redis commands per second, one idle worker polling (diagnostic)", poll.rate, "commands/s")
	s.note("part 4: in process with worker.ServerConfig and the worker's chain, twice: polling every TASK_CHECK_INTERVAL (%v: the worker without fair dispatch), then with worker.IdleWait (cmd/worker with fair dispatch: it waits for the dispatcher's announcement, rechecking every %v); %d tasks each enqueued one at a time into an idle system through the fair enqueuer; idle commands counted by redis-server (INFO stats) over %v, including the dispatcher's heartbeat (1/s per queue)",
		worker.DefaultTaskCheckInterval, fair.DefaultIdleRecheck, b.sz.FairIdleSamples, idleFor)
	return nil
}

// fairIdleRound runs one way of part 4 and returns the idle commands per
// second and the pickup latencies.
func (b *bench) fairIdleRound(ctx context.Context, c *coreDB, cache *storage.Cache, announced bool, idleFor time.Duration) (float64, []time.Duration, error) {
	if err := b.env.flushRedis(ctx); err != nil {
		return 0, nil, err
	}
	enq, d := b.fairEnqueuer(cache, fair.Config{})
	t := c.tenants[27]
	var mu sync.Mutex
	started := map[int64]time.Time{}
	handler := func(ctx context.Context, p tasks.InvoicePDF) error {
		mu.Lock()
		started[p.InvoiceID] = time.Now()
		mu.Unlock()
		return nil
	}
	log := slog.New(slog.DiscardHandler)
	rep := d.NewReporter(log)
	mux := asynq.NewServeMux()
	mux.Use(worker.Chain(worker.MuxOptions{Logger: log, Catalog: cache, Reporter: rep, Parker: d})...)
	mux.Handle(tasks.TypeInvoicePDF, worker.Handle(handler))
	srv, stopServer, err := b.asynqServer(worker.ServerOptions{Logger: log}, announced)
	if err != nil {
		return 0, nil, err
	}
	mctx, stop := context.WithCancel(ctx)
	var member sync.WaitGroup
	member.Go(func() {
		d.Serve(mctx, fair.Membership{ID: "bench-idle", Queues: tasks.Queues, Concurrency: worker.DefaultConcurrency}, log)
	})
	defer func() {
		stopServer()
		stop()
		member.Wait()
		rep.Close(context.WithoutCancel(ctx))
	}()
	if err := srv.Start(mux); err != nil {
		return 0, nil, err
	}
	time.Sleep(time.Second)
	// Redis commands an idle worker costs: the server's count over idleFor.
	before, err := commandsProcessed(ctx, b.env.rdb)
	if err != nil {
		return 0, nil, err
	}
	time.Sleep(idleFor)
	after, err := commandsProcessed(ctx, b.env.rdb)
	if err != nil {
		return 0, nil, err
	}
	idleRate := float64(after-before) / idleFor.Seconds()

	sent := map[int64]time.Time{}
	for i := range b.sz.FairIdleSamples {
		id := int64(1_000_000 + i)
		at := time.Now()
		if _, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: t.ID, InvoiceID: id}); err != nil {
			return 0, nil, err
		}
		sent[id] = at
		// Let the system go idle again: past the worker's idle poll.
		time.Sleep(150*time.Millisecond + time.Duration(i%7)*10*time.Millisecond)
	}
	// Wait for the last ones to start: on a loaded machine that can take
	// longer than any fixed pause.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(started)
		mu.Unlock()
		if n >= len(sent) {
			break
		}
	}
	mu.Lock()
	var lat []time.Duration
	for id, at := range sent {
		if st, ok := started[id]; ok {
			lat = append(lat, st.Sub(at))
		}
	}
	mu.Unlock()
	if len(lat) < len(sent) {
		return 0, nil, fmt.Errorf("%d of %d idle-pickup tasks started", len(lat), len(sent))
	}
	slices.Sort(lat)
	return idleRate, lat, nil
}

// commandsProcessed reads total_commands_processed from INFO stats (the
// sum over the masters on a cluster).
func commandsProcessed(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	return infoSum(ctx, rdb, "stats", "total_commands_processed")
}

// usedMemory reads used_memory from INFO memory (the sum over the masters
// on a cluster).
func usedMemory(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	return infoSum(ctx, rdb, "memory", "used_memory")
}

// infoSum reads one numeric field of an INFO section: of the server, or
// summed over every master of a cluster.
func infoSum(ctx context.Context, rdb redis.UniversalClient, section, field string) (int64, error) {
	one := func(ctx context.Context, c redis.UniversalClient) (int64, error) {
		info, err := c.Info(ctx, section).Result()
		if err != nil {
			return 0, err
		}
		for line := range strings.SplitSeq(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, field+":"); ok {
				return strconv.ParseInt(v, 10, 64)
			}
		}
		return 0, fmt.Errorf("no %s in INFO %s", field, section)
	}
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return one(ctx, rdb)
	}
	var mu sync.Mutex
	var sum int64
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := one(ctx, m)
		mu.Lock()
		sum += n
		mu.Unlock()
		return err
	})
	return sum, err
}

// fairDispatchScaling is part 5: one dispatcher, no worker process; tenant
// ids are synthetic (the dispatcher only validates their form).
func (b *bench) fairDispatchScaling(ctx context.Context, s *Scenario) error {
	if err := b.env.flushRedis(ctx); err != nil {
		return err
	}
	// Both sizes live in Redis at once, in two queues of one dispatcher
	// (the scripts work on one queue's keys), and the samples alternate
	// between them: each pair of samples meets the same machine, whose
	// load moves the p99 of a round trip more than the tenant count does.
	sets := []struct {
		queue string
		ids   []string
	}{{queue: tasks.QueueCritical}, {queue: tasks.QueueDefault}}
	d := fair.New(b.env.rdb, fair.Config{MinPending: 10})
	var memPerTask float64
	const perTenant = 3
	for k, tenants := range []int{10, b.sz.FairScaleTenants} {
		memBefore, err := usedMemory(ctx, b.env.rdb)
		if err != nil {
			return err
		}
		q := sets[k].queue
		ids := make([]string, tenants)
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(8)
		for i := range tenants {
			ids[i] = fmt.Sprintf("tn_bench%020d", i)
			g.Go(func() error {
				ts := make([]fair.Task, perTenant)
				for j := range ts {
					ts[j] = benchFairTask(q, ids[i], j)
				}
				_, err := d.Enqueue(gctx, ids[i], fair.Policy{Weight: 1 + i%4}, ts)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		sets[k].ids = ids
		if k == 1 {
			memAfter, err := usedMemory(ctx, b.env.rdb)
			if err != nil {
				return err
			}
			memPerTask = float64(memAfter-memBefore) / float64(tenants*perTenant)
		}
	}
	// Cycles of a worker: take the oldest pending task, report it (which
	// admits the next), and one enqueue per cycle; one cycle of each size
	// in turn.
	n := b.sz.FairDispatchSamples
	lats := [2][]time.Duration{make([]time.Duration, 0, 2*n), make([]time.Duration, 0, 2*n)}
	for i := range n {
		for k, set := range sets {
			q := set.queue
			id, err := b.env.rdb.RPopLPush(ctx, "asynq:{"+q+"}:pending", "asynq:{"+q+"}:active").Result()
			if err != nil {
				return fmt.Errorf("dequeue: %w", err)
			}
			b.env.rdb.HSet(ctx, "asynq:{"+q+"}:t:"+id, "state", "active")
			owner := id[len("bench:"):strings.LastIndexByte(id, ':')]
			t0 := time.Now()
			if err := d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: id, TenantID: owner, Type: tasks.TypeInvoicePDF, Cost: time.Millisecond}}); err != nil {
				return err
			}
			lats[k] = append(lats[k], time.Since(t0))
			tenant := set.ids[i%len(set.ids)]
			t0 = time.Now()
			if _, err := d.Enqueue(ctx, tenant, fair.Policy{Weight: 1}, []fair.Task{benchFairTask(q, tenant, 1000+i)}); err != nil {
				return err
			}
			lats[k] = append(lats[k], time.Since(t0))
		}
	}
	var p99s [2]time.Duration
	for k, lat := range lats {
		slices.Sort(lat)
		p99s[k] = percentile(lat, 99)
	}
	s.add(fmt.Sprintf("dispatch p99 (one enqueue or completion report), %d tenants with backlogs", b.sz.FairScaleTenants), micros(p99s[1]), "µs").
		against("10 tenants with backlogs", micros(p99s[0]), "µs", nil).
		target("<", 1.2, true, "grows < 20%")
	s.add("Redis memory per waiting task", memPerTask, "bytes")
	s.note("part 5: Dispatcher.Complete (frees a slot, charges, admits the next) and Dispatcher.Enqueue (one task) timed from the bench over loopback, %d of each per size; every tenant holds a backlog of 3; the 10 tenants (queue %s) and the %d (queue %s) are in Redis together and their samples alternate", b.sz.FairDispatchSamples, sets[0].queue, b.sz.FairScaleTenants, sets[1].queue)
	return nil
}

// benchFairTask is task j of tenant in queue, an invoice:pdf-shaped message.
func benchFairTask(queue, tenant string, j int) fair.Task {
	payload, _ := json.Marshal(tasks.InvoicePDF{TenantID: tenant, InvoiceID: int64(j + 1)})
	return fair.Task{Message: fair.Message{
		ID: fmt.Sprintf("bench:%s:%d", tenant, j), Type: tasks.TypeInvoicePDF, Queue: queue,
		Payload: payload, Retry: 10, Timeout: 2 * time.Minute, Retention: time.Hour,
	}}
}

// fairSeq keeps invoice numbers of seedTenantInvoices unique per run.
var fairSeq atomic.Int64

// seedTenantInvoices inserts n invoices of lines lines into t's schema,
// in transactions of 5,000, and returns their ids.
func seedTenantInvoices(ctx context.Context, pool *pgxpool.Pool, t tenantctx.Tenant, n, lines int) ([]int64, error) {
	ctx = tenantctx.WithTenant(ctx, t)
	prefix := fmt.Sprintf("F%d", fairSeq.Add(1))
	var out []int64
	now := time.Now()
	for lo := 0; lo < n; lo += 5000 {
		hi := min(lo+5000, n)
		err := schema.InTenant(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
			customer, err := invoice.CreateCustomer(ctx, tx, invoice.Customer{Name: singleByte.name, Company: singleByte.company,
				Email: fmt.Sprintf("fair+%s-%d@kowalska.example", prefix, lo), Address: singleByte.address})
			if err != nil {
				return err
			}
			invs := make([]invoice.New, 0, hi-lo)
			for k := lo; k < hi; k++ {
				invs = append(invs, invoice.New{
					Number: fmt.Sprintf("%s-%07d", prefix, k+1), Customer: invoice.Customer{ID: customer},
					Status: "sent", Currency: "EUR", IssuedAt: now.AddDate(0, 0, -40), DueAt: now.AddDate(0, 0, 10),
					Notes: singleByte.notes, Lines: benchLines(singleByte, lines),
				})
			}
			ids, err := invoice.Create(ctx, tx, invs...)
			out = append(out, ids...)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("seed invoices of %s: %w", t.Slug, err)
		}
	}
	return out, nil
}
