package worker_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// recordedLog keeps the records logged at info and above.
type recordedLog struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *recordedLog) Enabled(_ context.Context, level slog.Level) bool {
	return level >= slog.LevelInfo
}
func (l *recordedLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r)
	return nil
}
func (l *recordedLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *recordedLog) WithGroup(string) slog.Handler      { return l }

// count returns how many records at level match msg (a substring; "" is
// any).
func (l *recordedLog) count(level slog.Level, msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.records {
		if r.Level == level && strings.Contains(r.Message, msg) {
			n++
		}
	}
	return n
}

// countedPool is a pool on url whose dials are counted in dials.
func countedPool(t *testing.T, url string, dials *atomic.Int64) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// breakerEnv is the production chain with DatabaseBreakers over two real
// PostgreSQL servers: "main" and the tenant database "second", each
// tenant task running one query on its tenant's database.
type breakerEnv struct {
	*breakerChain
	log             *recordedLog
	reg             *prometheus.Registry
	main, second    *testenv.PostgresServer
	mainDials       atomic.Int64
	secondDials     atomic.Int64
	onMain, onSec   tenantctx.Tenant
	mainPool, sPool *pgxpool.Pool
	catalog         *memstore.Catalog
	pools           map[string]*pgxpool.Pool
	// catalogRuns counts the runs of the tenant:migrate and tenant:destroy
	// handlers, which write main (the catalog) and use the tenant's
	// database, as the real ones do.
	catalogRuns atomic.Int64
}

func newBreakerEnv(t *testing.T) *breakerEnv {
	t.Helper()
	e := &breakerEnv{}
	e.main, e.second = testenv.StartPostgres(t), testenv.StartPostgres(t)
	e.mainPool = countedPool(t, e.main.CreateDatabase(t), &e.mainDials)
	e.sPool = countedPool(t, e.second.CreateDatabase(t), &e.secondDials)
	pools := map[string]*pgxpool.Pool{tenantctx.DefaultDatabase: e.mainPool, "second": e.sPool}

	catalog := memstore.New()
	e.onMain = addTenant(t, catalog, "breaker-main", tenantctx.StatusActive)
	if _, err := catalog.AddDatabase(context.Background(), "second", e.second.URL()); err != nil {
		t.Fatal(err)
	}
	e.onSec = tenantOn(t, catalog, "breaker-second", "second")
	if e.onSec.DatabaseName() != "second" {
		t.Fatalf("tenant placed on %q, want second", e.onSec.DatabaseName())
	}

	e.catalog, e.pools = catalog, pools
	e.newChain(t)
	return e
}

// newChain gives e fresh breakers, log and metrics, and the chain over
// them.
func (e *breakerEnv) newChain(t *testing.T) {
	t.Helper()
	e.log, e.reg = &recordedLog{}, prometheus.NewRegistry()
	pools := e.pools
	query := func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := pool.Exec(ctx, "SELECT 1")
		return err
	}
	e.breakerChain = newBreakerChain(t, worker.BreakerOptions{
		Probe: worker.PingDatabase(func(_ context.Context, name string) (*pgxpool.Pool, error) { return pools[name], nil }),
		// Probes 20 ms after the outage starts, then 40, 80, 100 ms apart.
		ProbeMin: 20 * time.Millisecond, ProbeMax: 100 * time.Millisecond,
		Logger: slog.New(e.log), Registerer: e.reg,
	}, e.catalog, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
			tenant, _ := tenantctx.FromContext(ctx)
			return query(ctx, pools[tenant.DatabaseName()])
		}),
		tasks.TypeSweepOverdue: worker.Handle(func(ctx context.Context, _ tasks.SweepOverdue) error {
			return query(ctx, e.mainPool)
		}),
		tasks.TypeTenantMigrate: worker.Handle(func(ctx context.Context, _ tasks.TenantMigrate) error {
			e.catalogRuns.Add(1)
			tenant, _ := tenantctx.FromContext(ctx)
			if err := query(ctx, pools[tenant.DatabaseName()]); err != nil {
				return err
			}
			return query(ctx, e.mainPool)
		}),
		tasks.TypeTenantDestroy: worker.Handle(func(ctx context.Context, _ tasks.TenantDestroy) error {
			e.catalogRuns.Add(1) // a tenant the catalog no longer has: FinishErased on main
			return query(ctx, e.mainPool)
		}),
	})
}

// TestDatabaseBreakerHoldsTasksWithoutDialing: with a tenant database
// stopped, 60 of its tasks arriving over about half a second dial it a
// handful of times (the first attempt and the backed-off probes, not once
// per task) and log two warn lines (that attempt's and the breaker's),
// none of them a failure; the tenants on "main" are served meanwhile, the
// breaker's gauge says down and its counter counts the held tasks; once
// the server is back all 60 run, with one "reachable again" line. Then the
// same with "main" stopped: every task is held, those of "second" too.
func TestDatabaseBreakerHoldsTasksWithoutDialing(t *testing.T) {
	t.Parallel()
	e := newBreakerEnv(t)
	const n = 60
	stopServer(t, e.second)
	start := time.Now()
	for i := range n {
		err := e.run(tasks.InvoicePDF{TenantID: e.onSec.ID, InvoiceID: int64(i + 1)})
		if !errors.Is(err, worker.ErrDatabaseUnavailable) || worker.IsFailure(err) || worker.Outcome(err) != worker.OutcomeNotReady {
			t.Fatalf("task %d of the stopped database: %v; want ErrDatabaseUnavailable, not a failure", i, err)
		}
		if err := e.run(tasks.InvoicePDF{TenantID: e.onMain.ID, InvoiceID: int64(i + 1)}); err != nil {
			t.Fatalf("task %d of a tenant on main while second is down: %v", i, err)
		}
		time.Sleep(8 * time.Millisecond)
	}
	dials := e.secondDials.Load()
	warns := e.log.count(slog.LevelWarn, "")
	most := dialsAtMost(time.Since(start))
	t.Logf("while second was down (%v): %d dials, %d warn lines for %d tasks", time.Since(start), dials, warns, n)
	if dials > most {
		t.Errorf("%d dials of the stopped database for %d tasks in %v; want the first attempt and the probes only (<= %d)", dials, n, time.Since(start), most)
	}
	if warns > 3 || e.log.count(slog.LevelWarn, "database unreachable") != 1 {
		t.Errorf("%d warn lines (%d \"database unreachable\") for %d tasks; want at most 3, one of them the breaker's",
			warns, e.log.count(slog.LevelWarn, "database unreachable"), n)
	}
	if !e.breakers.Down("second") || e.breakers.Down(tenantctx.DefaultDatabase) {
		t.Errorf("down: second %t, main %t; want second only", e.breakers.Down("second"), e.breakers.Down(tenantctx.DefaultDatabase))
	}
	if v := testutil.ToFloat64(e.metric(t, "second")); v != 1 {
		t.Errorf("tenantworker_database_down{database=second} = %v, want 1", v)
	}
	if v := heldTotal(t, e.reg, "second"); v < float64(n-most) {
		t.Errorf("tenantworker_database_held_tasks_total{database=second} = %v, want >= %d", v, n-most)
	}

	e.second.Start(t)
	waitRuns(t, "a task of second runs after the restart", func() error { return e.run(tasks.InvoicePDF{TenantID: e.onSec.ID, InvoiceID: 1}) })
	for i := range n {
		if err := e.run(tasks.InvoicePDF{TenantID: e.onSec.ID, InvoiceID: int64(i + 1)}); err != nil {
			t.Errorf("task %d of second once it is back: %v", i, err)
		}
	}
	if c := e.log.count(slog.LevelInfo, "database reachable again"); c != 1 {
		t.Errorf("%d \"database reachable again\" lines, want 1", c)
	}
	if v := testutil.ToFloat64(e.metric(t, "second")); v != 0 || e.breakers.Down("second") {
		t.Errorf("second back: gauge %v, down %t; want 0, false", v, e.breakers.Down("second"))
	}

	// "main" down: its system and tenant tasks alike are held after the
	// first attempt that found it down; the tenants of "second" (their
	// look-up answered without main, as the tenant cache does) still run;
	// all run once main is back.
	e.newChain(t)
	mainDown(t, e, 40)
}

// dialsAtMost bounds the dials of a database that newChain's breakers
// found down, over elapsed: the attempt that found it down, and the
// probes its schedule (20 ms, then doubling up to 100 ms apart) allows in
// that time, plus one in flight and one for the background prober. So the
// bound follows how long the loop took on a busy machine, where each task
// is slower, and still stays far below one dial per task: 60 tasks in
// 1.5 s allow 19.
func dialsAtMost(elapsed time.Duration) int64 {
	most := int64(3)
	for wait, at := 20*time.Millisecond, time.Duration(0); ; wait = min(2*wait, 100*time.Millisecond) {
		if at += wait; at > elapsed {
			return most
		}
		most++
	}
}

// mainDown is the "main" half of TestDatabaseBreakerHoldsTasksWithoutDialing:
// n rounds of a sweep and a task of each tenant with main stopped.
func mainDown(t *testing.T, e *breakerEnv, n int) {
	e.mainDials.Store(0)
	stopServer(t, e.main)
	start := time.Now()
	for i := range n {
		if err := e.run(tasks.InvoicePDF{TenantID: e.onSec.ID, InvoiceID: 1}); err != nil {
			t.Fatalf("task of a tenant on second (attempt %d) with main stopped: %v", i, err)
		}
		for _, p := range []tasks.Payload{tasks.SweepOverdue{Tick: 1700000000}, tasks.InvoicePDF{TenantID: e.onMain.ID, InvoiceID: 1}} {
			err := e.run(p)
			if !errors.Is(err, worker.ErrDatabaseUnavailable) || worker.IsFailure(err) {
				t.Fatalf("%s (attempt %d) with main stopped: %v; want ErrDatabaseUnavailable, not a failure", p.TypeName(), i, err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d, most := e.mainDials.Load(), dialsAtMost(time.Since(start)); d > most {
		t.Errorf("%d dials of the stopped main for %d tasks in %v; want <= %d", d, 2*n, time.Since(start), most)
	}
	if w := e.log.count(slog.LevelWarn, ""); w > 3 {
		t.Errorf("%d warn lines for %d tasks, want at most 3", w, 2*n)
	}
	if !e.breakers.Down(tenantctx.DefaultDatabase) || e.breakers.Down("second") {
		t.Errorf("down: main %t, second %t; want main only", e.breakers.Down(tenantctx.DefaultDatabase), e.breakers.Down("second"))
	}
	e.main.Start(t)
	waitRuns(t, "the sweep runs after main's restart", func() error { return e.run(tasks.SweepOverdue{Tick: 1700000000}) })
	for _, tn := range []tenantctx.Tenant{e.onMain, e.onSec} {
		if err := e.run(tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}); err != nil {
			t.Errorf("task of %s once main is back: %v", tn.DatabaseName(), err)
		}
	}
}

// metric is tenantworker_database_down{database=name}.
func (e *breakerEnv) metric(t *testing.T, name string) prometheus.Collector {
	return gatheredGauge(t, e.reg, "tenantworker_database_down", name)
}

// gatheredGauge is a constant gauge of the value reg gathers for metric
// with label database=name (0 when absent).
func gatheredGauge(t *testing.T, reg *prometheus.Registry, metric, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	v := 0.0
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "database" && l.GetValue() == name {
					if m.Gauge != nil {
						v = m.Gauge.GetValue()
					} else if m.Counter != nil {
						v = m.Counter.GetValue()
					}
				}
			}
		}
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "x"}, func() float64 { return v })
}

// TestDatabaseBreakerProbesOneAtATime: while a database is down, twenty
// tasks arriving at once when a probe is due run one probe, the others
// held at once; after a failed probe none is due before its backoff; the
// still-down line comes at most once per SummaryEvery; a probe that
// succeeds lets its task run and closes the breaker. The schedule is
// checked by when each probe started and by how long the held tasks kept
// coming, not over a fixed window of wall-clock time, which a loaded
// machine (a stalled test process) cuts short.
func TestDatabaseBreakerProbesOneAtATime(t *testing.T) {
	t.Parallel()
	var probes atomic.Int64
	var up atomic.Bool
	release := make(chan struct{})
	unreachable := startingUp()
	log := &recordedLog{}
	catalog := memstore.New()
	tn := addTenant(t, catalog, "probe-once", tenantctx.StatusActive)
	var ran atomic.Int64
	var probeMu sync.Mutex
	var probeStarts []time.Time // when each probe began
	var probeEnd time.Time      // when the last one returned
	c := newBreakerChain(t, worker.BreakerOptions{
		Probe: func(ctx context.Context, _ string) error {
			probeMu.Lock()
			probeStarts = append(probeStarts, time.Now())
			probeMu.Unlock()
			probes.Add(1)
			defer func() {
				probeMu.Lock()
				probeEnd = time.Now()
				probeMu.Unlock()
			}()
			select {
			case <-release:
			case <-ctx.Done(): // the probe's bound, or Close
				return ctx.Err()
			}
			if up.Load() {
				return nil
			}
			return unreachable
		},
		ProbeMin: 10 * time.Millisecond, ProbeMax: 40 * time.Millisecond, SummaryEvery: 100 * time.Millisecond,
		Logger: slog.New(log),
	}, catalog, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(context.Context, tasks.InvoicePDF) error {
			if !up.Load() {
				return unreachable
			}
			ran.Add(1)
			return nil
		}),
	})
	b := c.breakers
	run := func() error { return c.render(tn) }
	begin := time.Now() // before the breaker opens
	if err := run(); !errors.Is(err, worker.ErrDatabaseUnavailable) || errors.Is(err, worker.ErrDatabaseDown) {
		t.Fatalf("first attempt: %v; want ErrDatabaseUnavailable from the attempt itself", err)
	}
	if !b.Down(tenantctx.DefaultDatabase) {
		t.Fatal("main not down after an attempt found it unreachable")
	}
	time.Sleep(15 * time.Millisecond) // the first probe is due (ProbeMin 10 ms)
	var wg sync.WaitGroup
	var held atomic.Int64
	for range 20 {
		wg.Go(func() {
			if err := run(); errors.Is(err, worker.ErrDatabaseDown) && !worker.IsFailure(err) {
				held.Add(1)
			}
		})
	}
	// One probe: a task's, the other 19 held; or, when the tasks came
	// late on a slow machine, the breakers' own (a probe overdue for
	// ProbeMax), all 20 held.
	testenv.WaitFor(t, 10*time.Second, "19 tasks held while one probes", func() bool { return held.Load() >= 19 })
	if p := probes.Load(); p != 1 {
		t.Errorf("%d probes in flight, want 1", p)
	}
	close(release) // the probe fails; later ones answer at once
	wg.Wait()
	if held.Load() != 20 {
		t.Errorf("%d of 20 tasks held, want all (the prober's too)", held.Load())
	}
	// A task that has come and gone within the failed probe's backoff
	// (20 ms) is held without a probe. On a loaded machine the task may
	// come later, when a probe is due again: then there is nothing to say.
	probeMu.Lock()
	failedAt, before := probeEnd, probes.Load()
	probeMu.Unlock()
	err := run()
	withinBackoff := time.Since(failedAt) < 20*time.Millisecond
	if !errors.Is(err, worker.ErrDatabaseDown) || (withinBackoff && probes.Load() != before) {
		t.Errorf("task right after a failed probe: %v, %d probes before it, %d after; want held without a probe (20 ms backoff)", err, before, probes.Load())
	}
	// Held tasks keep coming, probes failing, until five probes and two
	// still-down lines have come (at a probe every 20, then 40 ms, and a
	// line per 100 ms, after about 200 ms on an idle machine).
	testenv.WaitFor(t, 30*time.Second, "five probes and two still-down lines", func() bool {
		if err := run(); !errors.Is(err, worker.ErrDatabaseDown) {
			t.Fatalf("task while down: %v; want held", err)
		}
		time.Sleep(time.Millisecond)
		return probes.Load() >= 5 && log.count(slog.LevelWarn, "database still down") >= 2
	})
	// At most one still-down line per 100 ms since the breaker opened
	// (the first comes 100 ms after it).
	if c, most := log.count(slog.LevelWarn, "database still down"), int(time.Since(begin)/(100*time.Millisecond)); c > most {
		t.Errorf("%d still-down lines in %v, want at most %d (one per 100 ms)", c, time.Since(begin).Round(time.Millisecond), most)
	}
	// Probes 20, then 40 ms apart at least (the backoff doubling from 10
	// ms after each failed probe, capped at ProbeMax).
	probeMu.Lock()
	backoff := 10 * time.Millisecond
	for i := 1; i < len(probeStarts); i++ {
		backoff = min(2*backoff, 40*time.Millisecond)
		if gap := probeStarts[i].Sub(probeStarts[i-1]); gap < backoff {
			t.Errorf("probe %d began %v after probe %d, want at least its backoff %v", i+1, gap, i, backoff)
		}
	}
	probeMu.Unlock()
	if w := log.count(slog.LevelWarn, ""); w != 2+log.count(slog.LevelWarn, "database still down") {
		t.Errorf("%d warn lines; want the first attempt's, the breaker's and the still-down lines only", w)
	}
	up.Store(true)
	testenv.WaitFor(t, 10*time.Second, "a task runs once the probe succeeds", func() bool { return run() == nil })
	if b.Down(tenantctx.DefaultDatabase) || ran.Load() != 1 || log.count(slog.LevelInfo, "database reachable again") != 1 {
		t.Errorf("after a successful probe: down %t, ran %d, %d back lines; want false, 1, 1",
			b.Down(tenantctx.DefaultDatabase), ran.Load(), log.count(slog.LevelInfo, "database reachable again"))
	}
}
