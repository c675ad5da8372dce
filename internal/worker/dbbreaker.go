package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/invoicing/tenantworker/internal/pgreach"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// ErrDatabaseDown wraps ErrDatabaseUnavailable for a task that
// DatabaseBreakers held without dialing: its database is known
// unreachable and no probe has reached it since. Like any database wait it
// is retried 15-30 s later (ServerOptions.NotReadyDelayMin..Max) without
// counting as a failure, and kept on its last attempt (KeepLastAttempt);
// Log logs it at debug only (the breaker logs the outage itself).
var ErrDatabaseDown = fmt.Errorf("database down, task held: %w", ErrDatabaseUnavailable)

// heldError is the error of a task, or of a tenant-cache look-up, that
// DatabaseBreakers held: ErrDatabaseDown, naming the database held, so
// that DatabaseBreaker counts a task held by a look-up it shared with
// others (the load gate's hold is counted per task, not per look-up).
type heldError struct {
	database string
	msg      string
}

func (e *heldError) Error() string { return e.msg }
func (e *heldError) Unwrap() error { return ErrDatabaseDown }

// Defaults of BreakerOptions.
const (
	DefaultBreakerProbeMin     = time.Second
	DefaultBreakerProbeMax     = 30 * time.Second
	DefaultBreakerProbeTimeout = 5 * time.Second
	DefaultBreakerSummaryEvery = time.Minute
)

// BreakerOptions configures NewDatabaseBreakers.
type BreakerOptions struct {
	// Probe checks that the database of that name ("main" or a tenant
	// database) can be reached; required. The worker's is
	// placement.Registry.Ping, which reaches a tenant database without
	// asking the catalog on "main" (down, perhaps, while that database is
	// back).
	Probe func(ctx context.Context, database string) error
	// Locate names the database an attempt's error says it could not
	// reach, when the error tells (a pgconn.ConnectError names the server
	// it dialed); the worker's is placement.Registry.DatabaseOf. The
	// breaker of that database opens. nil, or false: the database the
	// attempt needed (its tenant's; "main" for a system task or a failed
	// tenant look-up), which is wrong for a tenant task whose handler could
	// not reach "main" (tenant:migrate and tenant:destroy write the
	// catalog there).
	Locate func(err error) (database string, ok bool)
	// ProbeMin is the wait before the first probe of a database found
	// down, doubled after each failed probe up to ProbeMax (defaults 1 s
	// and 30 s).
	ProbeMin, ProbeMax time.Duration
	// ProbeTimeout bounds one probe (default 5 s).
	ProbeTimeout time.Duration
	// SummaryEvery is the least time between two "still down" lines of
	// one database (default 1 minute).
	SummaryEvery time.Duration
	// Logger receives the down, still-down and back lines; nil means
	// slog.Default().
	Logger *slog.Logger
	// Registerer, when set, receives tenantworker_database_down{database}
	// and tenantworker_database_held_tasks_total{database}.
	Registerer prometheus.Registerer
}

// DatabaseBreakers is a circuit breaker per PostgreSQL database ("main",
// holding the catalog, and each tenant database): once an attempt failed
// because a database could not be reached at all (ErrDatabaseUnavailable),
// the tasks that need that database fail at once with ErrDatabaseDown
// (held: no dial, no warn line of their own) until a probe reaches it.
// One probe runs at a time, by the first task that arrives once the
// probe's backoff (ProbeMin doubling up to ProbeMax) has passed; when it
// succeeds that task runs. When no task came to probe a database for
// ProbeMax after its probe was due (its tenants' tasks stopped coming: the
// database was removed, its tenants moved, the worker is idle), the
// breakers probe it themselves, so that a database back is seen back (its
// tenantworker_database_down at 0) whether or not tasks need it. Breakers
// are per worker process and per database: a database down does not hold
// the tenants of the others. Use it through MuxOptions.Breakers; Close
// stops the background probes.
type DatabaseBreakers struct {
	opts   BreakerOptions
	logger *slog.Logger

	down *prometheus.GaugeVec
	held *prometheus.CounterVec

	ctx    context.Context // the background probes'; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the background probers (watch)

	mu     sync.Mutex
	dbs    map[string]*breaker
	closed bool
}

// breaker is one database's state.
type breaker struct {
	open        bool
	since       time.Time // when it was found down
	cause       string
	held        int64 // tasks held since it was found down
	heldSummary int64 // tasks held since the last still-down line
	lastLine    time.Time
	backoff     time.Duration
	nextProbe   time.Time
	probing     bool
	watching    bool // a background prober (watch) runs for it
	// readOnly: the last answer it was found down by says it takes no
	// writes (SQLSTATE 25006: a standby, default_transaction_read_only),
	// not that it could not be reached; its lines say so.
	readOnly bool
	// outOfFiles: the last error it was found down by says this process
	// had no file descriptor left to dial it (EMFILE), not that the
	// database could not be reached; its lines say so.
	outOfFiles bool
}

// NewDatabaseBreakers returns the breakers of opts (defaults filled in).
// It fails without a probe or when its metrics cannot be registered.
func NewDatabaseBreakers(opts BreakerOptions) (*DatabaseBreakers, error) {
	if opts.Probe == nil {
		return nil, errors.New("database breakers need a probe")
	}
	if opts.ProbeMin <= 0 {
		opts.ProbeMin = DefaultBreakerProbeMin
	}
	if opts.ProbeMax < opts.ProbeMin {
		opts.ProbeMax = max(DefaultBreakerProbeMax, opts.ProbeMin)
	}
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = DefaultBreakerProbeTimeout
	}
	if opts.SummaryEvery <= 0 {
		opts.SummaryEvery = DefaultBreakerSummaryEvery
	}
	b := &DatabaseBreakers{opts: opts, logger: opts.Logger, dbs: map[string]*breaker{}}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	if b.logger == nil {
		b.logger = slog.Default()
	}
	b.down = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: metricsNamespace, Name: "database_down",
		Help: "1 while this worker holds the tasks of a database it found unreachable (circuit breaker open), else 0.",
	}, []string{"database"})
	b.held = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Name: "database_held_tasks_total",
		Help: "Task attempts held without dialing because their database was down.",
	}, []string{"database"})
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{b.down, b.held} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register database breaker metrics: %w", err)
			}
		}
		b.down.WithLabelValues(tenantctx.DefaultDatabase)
		b.held.WithLabelValues(tenantctx.DefaultDatabase)
	}
	return b, nil
}

// PingDatabase is a probe of DatabaseBreakers over a fixed set of pools:
// it pings the pool of database name, pool(name). A pool function that
// reaches a tenant database through the catalog (placement.Registry.Pool)
// makes its probe fail while "main" is down: the worker probes with
// placement.Registry.Ping instead.
func PingDatabase(pool func(ctx context.Context, name string) (*pgxpool.Pool, error)) func(ctx context.Context, name string) error {
	return func(ctx context.Context, name string) error {
		p, err := pool(ctx, name)
		if err != nil {
			return err
		}
		return p.Ping(ctx)
	}
}

// Down reports whether database name is held as down.
func (b *DatabaseBreakers) Down(name string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.dbs[name]
	return s != nil && s.open
}

// admit returns nil when a task that needs database name may use it: the
// breaker is closed, or this task's probe just reached it. Otherwise it
// returns ErrDatabaseDown (held), or ctx's error when the task ended
// while probing.
func (b *DatabaseBreakers) admit(ctx context.Context, name string) error {
	return b.admitUntil(ctx, name, time.Time{}, true)
}

// admitLookUp is admit for the load gate that DatabaseBreaker puts on an
// attempt's ctx (storage.WithLoadGate). There ctx is the tenant cache's
// shared load: detached from the attempts waiting for it, and bounded by
// the cache's load timeout (storage.CacheOptions.LoadTimeout), whose end
// ends no task. So a probe it runs is bounded by that deadline as well as
// by ProbeTimeout, and one that the deadline cuts short timed out as any
// probe may: the database is still down (the next probe backed off) and
// the look-up is held (ErrDatabaseDown), rather than failed with the
// load's "context deadline exceeded", which would count against the
// task's retries and leave a probe due at once for the next look-up. A
// hold is not counted here: the look-up may be shared by several tasks
// (or be one of several of a task), so DatabaseBreaker counts each task
// its hold ends (countHeld).
func (b *DatabaseBreakers) admitLookUp(ctx context.Context, name string) error {
	deadline, _ := ctx.Deadline()
	return b.admitUntil(context.WithoutCancel(ctx), name, deadline, false)
}

// admitUntil is admit with its probe also bounded by deadline (zero: by
// ProbeTimeout alone); count says whether a hold counts a held task
// (holdLocked).
func (b *DatabaseBreakers) admitUntil(ctx context.Context, name string, deadline time.Time, count bool) error {
	b.mu.Lock()
	s := b.dbs[name]
	if s == nil || !s.open {
		b.mu.Unlock()
		return nil
	}
	now := time.Now()
	// A look-up with no time left (admitLookUp) leaves the probe due to
	// the next caller rather than count one it could not run.
	if s.probing || now.Before(s.nextProbe) || (!deadline.IsZero() && !now.Before(deadline)) {
		err := b.holdLocked(ctx, name, s, now, count)
		b.mu.Unlock()
		return err
	}
	s.probing = true
	b.mu.Unlock()

	perr := b.probe(ctx, name, s, deadline)

	b.mu.Lock()
	defer b.mu.Unlock()
	s.probing = false
	if perr != nil && ctx.Err() != nil {
		return ctx.Err() // the task ended: the next task probes
	}
	if b.settleLocked(ctx, name, s, perr) {
		return b.holdLocked(ctx, name, s, time.Now(), count)
	}
	return nil
}

// settleLocked records the result perr of a probe of database name: still
// down (true; the next probe backed off), or reached (false; s closed).
// b.mu is held.
func (b *DatabaseBreakers) settleLocked(ctx context.Context, name string, s *breaker, perr error) (down bool) {
	now := time.Now()
	if perr != nil {
		// A probe held itself (ErrDatabaseDown: a tenant database whose
		// URL is in the catalog on "main", held down) did not reach it.
		if _, unreachable := databaseUnreachable(perr); unreachable || errors.Is(perr, context.DeadlineExceeded) ||
			errors.Is(perr, ErrDatabaseDown) {
			s.backoff = min(2*s.backoff, b.opts.ProbeMax)
			s.nextProbe = now.Add(s.backoff)
			s.cause = perr.Error()
			if !errors.Is(perr, ErrDatabaseDown) {
				s.readOnly = pgreach.ReadOnly(perr)
				s.outOfFiles = pgreach.OutOfFiles(perr)
			}
			return true
		}
		// The server answered (a refused password, an unknown database):
		// it can be reached; the task meets the error itself.
	}
	s.open = false
	b.down.WithLabelValues(name).Set(0)
	msg := "database reachable again: its tasks run"
	switch {
	case s.readOnly:
		msg = "database takes writes again: its tasks run"
	case s.outOfFiles:
		msg = "file descriptors to spare again, database connected: its tasks run"
	}
	b.logger.InfoContext(ctx, msg, slog.String("database", name),
		slog.Duration("downtime", now.Sub(s.since).Round(time.Millisecond)), slog.Int64("held_tasks", s.held))
	return false
}

// watch is the background prober of database name's breaker s, from when
// it opens until it closes or Close: it probes when a probe has been due
// for ProbeMax and no task is probing. A probe that panics is logged and
// backed off.
func (b *DatabaseBreakers) watch(name string, s *breaker) {
	defer b.wg.Done()
	for {
		b.mu.Lock()
		if !s.open || b.closed {
			s.watching = false
			b.mu.Unlock()
			return
		}
		wait := time.Until(s.nextProbe.Add(b.opts.ProbeMax))
		due := wait <= 0 && !s.probing
		if due {
			s.probing = true
		} else if wait <= 0 {
			wait = b.opts.ProbeMin // a task is probing: look again later
		}
		b.mu.Unlock()
		if !due {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-b.ctx.Done():
				t.Stop()
			}
			continue
		}
		perr, panicked := b.backgroundProbe(name, s)
		b.mu.Lock()
		switch {
		case panicked: // probe ended s's probing; a task may probe by now
			s.nextProbe = time.Now().Add(s.backoff)
		case b.ctx.Err() == nil:
			s.probing = false
			b.settleLocked(b.ctx, name, s, perr)
		default:
			s.probing = false
		}
		b.mu.Unlock()
	}
}

// backgroundProbe is watch's probe, a panic recovered and logged.
func (b *DatabaseBreakers) backgroundProbe(name string, s *breaker) (perr error, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			panicked = true
			b.logger.ErrorContext(b.ctx, "database breaker probe panicked", slog.String("database", name), slog.Any("panic", r))
		}
	}()
	return b.probe(b.ctx, name, s, time.Time{}), false
}

// Close stops the background probes and waits for them; a breaker still
// open is probed by its tasks only. It returns nil.
func (b *DatabaseBreakers) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	return nil
}

// probe runs one probe of database name, within ProbeTimeout and by
// deadline (unless zero). A probe that panics (the panic goes on to
// Recover) ends s's probing, so that a later task probes again instead of
// every task of the database being held until the process restarts.
func (b *DatabaseBreakers) probe(ctx context.Context, name string, s *breaker, deadline time.Time) error {
	returned := false
	defer func() {
		if !returned {
			b.mu.Lock()
			s.probing = false
			b.mu.Unlock()
		}
	}()
	pctx, cancel := context.WithTimeout(ctx, b.opts.ProbeTimeout)
	defer cancel()
	if !deadline.IsZero() {
		var cancelBound context.CancelFunc
		pctx, cancelBound = context.WithDeadline(pctx, deadline)
		defer cancelBound()
	}
	err := b.opts.Probe(pctx, name)
	returned = true
	return err
}

// holdLocked returns the error of a task of database name held by s and,
// when count, counts it (countLocked); b.mu is held.
func (b *DatabaseBreakers) holdLocked(ctx context.Context, name string, s *breaker, now time.Time, count bool) error {
	if count {
		b.countLocked(ctx, name, s, now)
	}
	return &heldError{database: name, msg: fmt.Sprintf("database %s down since %s (%s), retried later without counting as a failure: %s",
		name, s.since.UTC().Format(time.RFC3339), s.cause, ErrDatabaseDown)}
}

// countHeld counts a task of database name that a tenant-cache look-up
// held (admitLookUp), as holdLocked counts the others.
func (b *DatabaseBreakers) countHeld(ctx context.Context, name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.dbs[name]
	if s == nil { // never opened: a hold names an opened breaker
		return
	}
	b.countLocked(ctx, name, s, time.Now())
}

// countLocked counts a held task of s and logs the still-down line when
// one is due; b.mu is held.
func (b *DatabaseBreakers) countLocked(ctx context.Context, name string, s *breaker, now time.Time) {
	s.held++
	s.heldSummary++
	b.held.WithLabelValues(name).Inc()
	if now.Sub(s.lastLine) >= b.opts.SummaryEvery {
		msg := "database still down: its tasks are held"
		switch {
		case s.readOnly:
			msg = "database still takes no writes: its tasks are held"
		case s.outOfFiles:
			msg = "process still out of file descriptors (too many open files) to connect to the database: its tasks are held"
		}
		attrs := []slog.Attr{slog.String("database", name),
			slog.Duration("down_for", now.Sub(s.since).Round(time.Second)), slog.Int64("held_tasks", s.heldSummary),
			slog.Int64("held_tasks_total", s.held), slog.Duration("next_probe_in", s.nextProbe.Sub(now).Round(time.Millisecond)),
			slog.String("cause", s.cause)}
		b.logger.LogAttrs(ctx, slog.LevelWarn, msg, append(attrs, openFilesAttrs(s)...)...)
		s.lastLine, s.heldSummary = now, 0
	}
}

// failed records that a task's attempt found database name unreachable,
// or taking no writes (err); the first such attempt opens its breaker,
// with a warning that says which.
func (b *DatabaseBreakers) failed(ctx context.Context, name string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.dbs[name]
	if s == nil {
		s = &breaker{}
		b.dbs[name] = s
	}
	if s.open {
		return
	}
	now := time.Now()
	*s = breaker{open: true, since: now, cause: err.Error(), lastLine: now, backoff: b.opts.ProbeMin, nextProbe: now.Add(b.opts.ProbeMin),
		watching: s.watching, readOnly: pgreach.ReadOnly(err), outOfFiles: pgreach.OutOfFiles(err)}
	if !s.watching && !b.closed {
		s.watching = true
		b.wg.Add(1)
		go b.watch(name, s)
	}
	b.down.WithLabelValues(name).Set(1)
	msg := "database unreachable: its tasks are held until a probe reaches it"
	switch {
	case s.readOnly:
		msg = "database takes no writes: its tasks are held until a probe finds it taking writes (a standby, or default_transaction_read_only: a replica's URL must be replaced by its primary's)"
	case s.outOfFiles:
		msg = "process out of file descriptors (too many open files), not the database's fault: its tasks are held until a probe connects; raise the worker's limit of open files (ulimit -n, systemd's LimitNOFILE) or lower what holds them (WORKER_CONCURRENCY, DB_MAX_CONNS)"
	}
	attrs := []slog.Attr{slog.String("database", name), slog.String("cause", s.cause), slog.Duration("first_probe_in", b.opts.ProbeMin)}
	b.logger.LogAttrs(ctx, slog.LevelWarn, msg, append(attrs, openFilesAttrs(s)...)...)
}

// openFilesAttrs is the process's limit of open files (open_files_limit,
// RLIMIT_NOFILE's soft limit) for the lines of a breaker s found down by
// the process's lack of file descriptors, when the limit can be read.
func openFilesAttrs(s *breaker) []slog.Attr {
	if !s.outOfFiles {
		return nil
	}
	if n, ok := openFilesLimit(); ok {
		return []slog.Attr{slog.Uint64("open_files_limit", n)}
	}
	return nil
}

// attemptDatabase is the database an attempt's tenant lives on, as
// DatabaseGate found it ("" until then), and whether DatabaseGate held
// (and counted) the attempt; DatabaseBreaker puts it in ctx.
type attemptDatabase struct {
	name string
	held bool
}

// attemptDatabaseKey is the context key of *attemptDatabase.
type attemptDatabaseKey struct{}

// DatabaseBreaker is the outer half of the breakers b (nil: it does
// nothing). It holds, while "main" is down, a system task (the sweeps work
// on the catalog there) and a tenant task whose type needs the catalog
// (tasks.Spec.NeedsCatalog: tenant:migrate, tenant:destroy,
// documents:prune), before its tenant look-up; DatabaseGate holds it too
// while its tenant's database is down. It gives every attempt's look-ups
// of the tenant cache a load gate (storage.WithLoadGate): one the cache
// cannot answer asks "main"'s breaker first, so that while "main" is down
// it is held (ErrDatabaseDown, no dial) unless a probe is due, which it
// runs as any task does, within the cache's load bound too (a probe that
// bound cuts short timed out: held, backed off; admitLookUp); one the
// cache answers runs as before, so a tenant on another database is served
// while "main" is down. After an attempt whose error is
// ErrDatabaseUnavailable (a real dial that failed, not a hold) opens the
// breaker of the database the error names (BreakerOptions.Locate), else
// of the database the attempt needed: its tenant's (DatabaseGate found
// it), or "main" for a system task or a tenant look-up that failed (the
// catalog). An attempt that a hold of the load gate ended is counted here
// (tenantworker_database_held_tasks_total), once, unless DatabaseGate held
// and counted it: several attempts may share one held look-up. The gate
// also holds placement.Registry's catalog read of a tenant database whose
// pool is not open yet (it asks storage.PassLoadGate). It runs right
// outside DatabaseUnavailable.
func DatabaseBreaker(b *DatabaseBreakers) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		if b == nil {
			return next
		}
		gate := func(ctx context.Context) error { return b.admitLookUp(ctx, tenantctx.DefaultDatabase) }
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			if env := envelopeOf(ctx, t); env.System || env.NeedsCatalog {
				if err := b.admit(ctx, tenantctx.DefaultDatabase); err != nil {
					if !env.System {
						return fmt.Errorf("tenant %s: %s needs the catalog: %w", env.TenantID, env.Type, err)
					}
					return err
				}
			}
			at := &attemptDatabase{}
			err := next.ProcessTask(storage.WithLoadGate(context.WithValue(ctx, attemptDatabaseKey{}, at), gate), t)
			// A hold of the load gate is counted here, once per task: the
			// look-up it held may have been shared by several tasks.
			if held := (*heldError)(nil); errors.As(err, &held) && !at.held {
				b.countHeld(ctx, held.database)
			}
			if errors.Is(err, ErrDatabaseUnavailable) && !errors.Is(err, ErrDatabaseDown) && ctx.Err() == nil {
				name := at.name
				if name == "" {
					name = tenantctx.DefaultDatabase
				}
				if b.opts.Locate != nil {
					if n, ok := b.opts.Locate(err); ok {
						name = n
					}
				}
				b.failed(ctx, name, err)
			}
			return err
		})
	}
}

// DatabaseGate is the inner half of the breakers b (nil: it does
// nothing): after ResolveTenant it names the tenant's database for
// DatabaseBreaker, and holds the task (ErrDatabaseDown) while that
// database ("main" included) is down. A tenant on another database runs
// while "main" is down when its look-up was answered from the tenant
// cache and its type does not need the catalog (DatabaseBreaker held
// those). It runs before DatabaseSlots, so that a held task takes no slot.
func DatabaseGate(b *DatabaseBreakers) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		if b == nil {
			return next
		}
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			tenant, ok := tenantctx.FromContext(ctx)
			if !ok {
				return next.ProcessTask(ctx, t)
			}
			name := tenant.DatabaseName()
			at, _ := ctx.Value(attemptDatabaseKey{}).(*attemptDatabase)
			if at != nil {
				at.name = name
			}
			if err := b.admit(ctx, name); err != nil {
				if at != nil {
					at.held = true // counted by admit
				}
				return fmt.Errorf("tenant %s: %w", tenant.ID, err)
			}
			return next.ProcessTask(ctx, t)
		})
	}
}
