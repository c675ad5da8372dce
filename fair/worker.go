package fair

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// reportBatch bounds the reports sent in one script call.
const reportBatch = 256

// reportLinger is how long a Reporter lets reports gather after the first
// one of a batch arrived. A completion report frees a slot and refills
// asynq's pending list; that list holds about DefaultPendingTime of work
// per worker slot, so a refill that comes a few milliseconds later leaves no
// worker idle, while a batch of many reports costs Redis about as much as
// one report: the dispatcher's script has a fixed cost per call (the
// lease check, the queue's depth, the ready window) besides its cost per
// task.
const reportLinger = 2 * time.Millisecond

// maxUnsent bounds the reports a Reporter keeps while Redis is
// unreachable. Past it the oldest are dropped (and logged): their slots
// are freed by the lease check instead, only their cost is lost.
const maxUnsent = 100_000

// Reporter sends workers' completion reports to the dispatcher in
// batches: one script call per queue carries every report that arrived
// within reportLinger of the first one of the batch, or while the previous
// call was on the wire, so a busy worker adds far less than one Redis
// round trip per task. Report never blocks on Redis.
type Reporter struct {
	d      *Dispatcher
	logger *slog.Logger

	mu      sync.Mutex
	pending []Report
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// NewReporter starts a Reporter; Close stops it. A nil logger means
// slog.Default().
func (d *Dispatcher) NewReporter(logger *slog.Logger) *Reporter {
	r := &Reporter{
		d:      d,
		logger: cmp.Or(logger, slog.Default()),
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go r.run()
	return r
}

// Report queues rep for the next batch. A report Complete would refuse
// (an invalid tenant id or queue name) is logged and dropped here: queued,
// it would fail its whole batch again and again, and hold every other
// report of its queue back.
func (r *Reporter) Report(rep Report) {
	if err := errors.Join(checkQueue(rep.Queue), checkTenant(rep.TenantID)); err != nil {
		r.logger.Error("fair: completion report dropped", slog.String("task_id", rep.TaskID), slog.String("error", err.Error()))
		return
	}
	r.mu.Lock()
	if len(r.pending) >= maxUnsent {
		r.logger.Warn("fair: completion reports piling up, dropping the oldest", slog.Int("pending", len(r.pending)))
		r.pending = r.pending[len(r.pending)/2:]
	}
	r.pending = append(r.pending, rep)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Close sends what is queued (bounded by ctx) and stops the Reporter.
func (r *Reporter) Close(ctx context.Context) {
	close(r.stop)
	select {
	case <-r.done:
	case <-ctx.Done():
		return
	}
	r.flush(ctx)
}

func (r *Reporter) run() {
	defer close(r.done)
	ctx := context.Background()
	backoff := 10 * time.Millisecond
	for {
		select {
		case <-r.stop:
			return
		case <-r.wake:
		}
		r.linger()
		if r.flush(ctx) {
			backoff = 10 * time.Millisecond
			continue
		}
		// Redis failed: keep the reports and try again later.
		select {
		case <-r.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// linger waits up to reportLinger for more reports, unless a full batch is
// already queued or the Reporter is stopping.
func (r *Reporter) linger() {
	r.mu.Lock()
	n := len(r.pending)
	r.mu.Unlock()
	if n >= reportBatch {
		return
	}
	t := time.NewTimer(reportLinger)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.stop:
	}
}

// flush sends every queued report; it reports whether all were sent.
func (r *Reporter) flush(ctx context.Context) bool {
	r.mu.Lock()
	batch := r.pending
	r.pending = nil
	r.mu.Unlock()
	if len(batch) == 0 {
		return true
	}
	byQueue := map[string][]Report{}
	for _, rep := range batch {
		byQueue[rep.Queue] = append(byQueue[rep.Queue], rep)
	}
	var failed []Report
	for q, reps := range byQueue {
		for len(reps) > 0 {
			n := min(len(reps), reportBatch)
			if err := r.d.Complete(ctx, q, reps[:n]); err != nil {
				r.logger.Error("fair: send completion reports", slog.String("queue", q), slog.Int("reports", n), slog.String("error", err.Error()))
				failed = append(failed, reps...)
				break
			}
			reps = reps[n:]
		}
	}
	if len(failed) == 0 {
		return true
	}
	r.mu.Lock()
	r.pending = append(failed, r.pending...)
	r.mu.Unlock()
	return false
}

// Membership describes one worker to the dispatcher.
type Membership struct {
	// ID names the worker (unique per process).
	ID string
	// Queues are the queues it serves.
	Queues []string
	// Concurrency is how many tasks it runs at once.
	Concurrency int
	// Interval is how often it renews its heartbeat and admits what fits
	// (a safety net: enqueues and completions admit on their own); 0
	// means one second.
	Interval time.Duration
}

// Serve keeps the worker registered until ctx is done, then removes it.
// The live workers' summed concurrency sizes how many tasks the
// dispatcher keeps pending in each queue. Errors are logged and retried at
// the next interval.
func (d *Dispatcher) Serve(ctx context.Context, m Membership, logger *slog.Logger) {
	logger = cmp.Or(logger, slog.Default())
	interval := cmp.Or(m.Interval, time.Second)
	ttl := 5 * interval
	beat := func(ctx context.Context, concurrency int) {
		for _, q := range m.Queues {
			if err := d.Heartbeat(ctx, q, m.ID, concurrency, ttl); err != nil && ctx.Err() == nil {
				logger.Warn("fair: worker heartbeat", slog.String("queue", q), slog.String("error", err.Error()))
			}
		}
	}
	beat(ctx, m.Concurrency)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			leave, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			beat(leave, 0)
			cancel()
			return
		case <-t.C:
			beat(ctx, m.Concurrency)
		}
	}
}
