package fair

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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

// reporterResendFor is how long after its first send a Reporter sends a
// failed batch again. Past it the batch is dropped (and logged): the
// dispatcher's record that the batch was applied (kept reporterTTL) could
// be gone, and a batch applied twice ends runs admitted in between. The
// lease check has freed the batch's slots long before.
const reporterResendFor = reporterTTL / 2

// Reporter sends workers' completion reports to the dispatcher in
// batches: one script call per queue carries every report that arrived
// within reportLinger of the first one of the batch, or while the previous
// call was on the wire, so a busy worker adds far less than one Redis
// round trip per task. Report never blocks on Redis.
//
// A batch whose call failed is sent again, whole and before any later
// batch of its queue, under the sequence number of its first send: the
// failed call may have been applied (a timeout, a connection lost after
// the script ran), and the dispatcher skips a batch of this Reporter it
// applied already. Applied twice, its reports would end the runs of their
// task ids admitted in between (a retry, a replacement) while those run,
// and their tenants could run past their caps. Failed sends are logged
// once when they begin (fair: send completion reports), at most once a
// minute while they go on, and once when they work again.
type Reporter struct {
	d      *Dispatcher
	logger *slog.Logger
	// id names the Reporter in the dispatcher's record of applied batches.
	id string

	mu      sync.Mutex
	pending []Report
	// held are batches whose send failed, oldest first, to be sent again
	// as they are; heldN counts their reports.
	held  []batch
	heldN int
	// seq numbers the batches (only flush, which never runs twice at
	// once, reads and writes it).
	seq uint64
	// failingSince is when sends began failing (zero while they work),
	// loggedAt when that was last logged (flush's, as seq).
	failingSince, loggedAt time.Time
	// closed is set by Close: later reports are dropped (and logged).
	closed bool
	// attempts counts the attempts begun (Attempt) and not ended;
	// settled, when set, is closed once none is left (Close waits on it).
	attempts int
	settled  chan struct{}
	stopOnce sync.Once
	wake     chan struct{}
	stop     chan struct{}
	done     chan struct{}
}

// batch is one script call's reports.
type batch struct {
	queue string
	seq   uint64
	reps  []Report
	// first is when it was first sent.
	first time.Time
}

// NewReporter starts a Reporter; Close stops it. A nil logger means
// slog.Default().
func (d *Dispatcher) NewReporter(logger *slog.Logger) *Reporter {
	var id [8]byte
	_, _ = rand.Read(id[:]) // never fails (crypto/rand)
	r := &Reporter{
		d:      d,
		logger: cmp.Or(logger, slog.Default()),
		id:     hex.EncodeToString(id[:]),
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
// report of its queue back. The lines about one report carry its task_id,
// task_type and tenant_id.
func (r *Reporter) Report(rep Report) {
	if err := errors.Join(checkQueue(rep.Queue), checkTenant(rep.TenantID)); err != nil {
		r.logger.Error("fair: completion report dropped", slog.String("task_id", rep.TaskID), slog.String("task_type", rep.Type),
			slog.String("tenant_id", rep.TenantID), slog.String("error", err.Error()))
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		// Nothing would send it: its slot is freed by the lease check.
		r.logger.Warn("fair: completion report after the reporter was closed, dropped", slog.String("task_id", rep.TaskID),
			slog.String("task_type", rep.Type), slog.String("tenant_id", rep.TenantID))
		return
	}
	if n := len(r.pending) + r.heldN; n >= maxUnsent {
		r.logger.Warn("fair: completion reports piling up, dropping the oldest", slog.Int("pending", n))
		r.dropOldest(n / 2)
	}
	r.pending = append(r.pending, rep)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// dropOldest drops n of the oldest unsent reports: those of failed
// batches first, then queued ones. r.mu is held.
func (r *Reporter) dropOldest(n int) {
	for n > 0 && len(r.held) > 0 {
		b := &r.held[0]
		k := min(n, len(b.reps))
		b.reps = b.reps[k:]
		r.heldN -= k
		n -= k
		if len(b.reps) == 0 {
			r.held = r.held[1:]
		}
	}
	r.pending = r.pending[min(n, len(r.pending)):]
}

// Attempt tells r that an attempt whose report is to come has begun; the
// attempt calls end once it has reported (or will not). Close waits for
// the attempts begun and not ended: asynq's shutdown gives up on a handler
// at its timeout (cancels its ctx, puts its task back) and returns without
// waiting for it, and the handler's report of its cut-off attempt (charged
// to its tenant: Report.CutOff) comes when it returns.
func (r *Reporter) Attempt() (end func()) {
	r.mu.Lock()
	r.attempts++
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			r.attempts--
			if r.attempts == 0 && r.settled != nil {
				close(r.settled)
				r.settled = nil
			}
			r.mu.Unlock()
		})
	}
}

// Close waits for the attempts begun (Attempt) to report, sends what is
// queued and stops the Reporter, all bounded by ctx; reports keep being
// sent while it waits. A report made after Close is dropped and logged (the
// lease check frees its slot). Closing again sends what an earlier Close
// left unsent.
func (r *Reporter) Close(ctx context.Context) {
	r.mu.Lock()
	if r.attempts > 0 && !r.closed {
		if r.settled == nil {
			r.settled = make(chan struct{})
		}
		settled := r.settled
		r.mu.Unlock()
		select {
		case <-settled:
		case <-ctx.Done():
		}
		r.mu.Lock()
	}
	r.closed = true
	r.mu.Unlock()
	r.stopOnce.Do(func() { close(r.stop) })
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

// flush sends the failed batches again, then every queued report; it
// reports whether all were sent. After a failed batch, the later batches
// of its queue are kept, unsent, behind it: the dispatcher skips a batch
// whose sequence number is not above the highest it applied.
func (r *Reporter) flush(ctx context.Context) bool {
	r.mu.Lock()
	batches := r.held
	fresh := r.pending
	r.held, r.heldN, r.pending = nil, 0, nil
	r.mu.Unlock()
	if len(batches) == 0 && len(fresh) == 0 {
		return true
	}
	byQueue := map[string][]Report{}
	var queues []string
	for _, rep := range fresh {
		if _, ok := byQueue[rep.Queue]; !ok {
			queues = append(queues, rep.Queue)
		}
		byQueue[rep.Queue] = append(byQueue[rep.Queue], rep)
	}
	for _, q := range queues {
		reps := byQueue[q]
		for len(reps) > 0 {
			n := min(len(reps), reportBatch)
			r.seq++
			batches = append(batches, batch{queue: q, seq: r.seq, reps: reps[:n:n]})
			reps = reps[n:]
		}
	}
	var kept []batch
	keptN := 0
	failed := map[string]bool{}
	var firstQueue string
	var firstErr error
	sent := false
	for _, b := range batches {
		if !failed[b.queue] {
			if b.first.IsZero() {
				b.first = time.Now()
			} else if time.Since(b.first) > reporterResendFor {
				r.logger.Error("fair: completion reports dropped, unsent for too long", slog.String("queue", b.queue), slog.Int("reports", len(b.reps)))
				continue
			}
			err := r.d.complete(ctx, b.queue, r.id, b.seq, b.reps)
			if err == nil {
				sent = true
				continue
			}
			if firstErr == nil {
				firstQueue, firstErr = b.queue, err
			}
			failed[b.queue] = true
		}
		kept = append(kept, b)
		keptN += len(b.reps)
	}
	r.logSends(len(failed), sent, firstQueue, keptN, firstErr)
	if len(kept) == 0 {
		return true
	}
	r.mu.Lock()
	r.held, r.heldN = kept, keptN
	r.mu.Unlock()
	return false
}

// logSends logs a flush whose sends failed in queues queues (the first
// one's, queue's, error err; reports reports kept to be sent again), as
// one line when sends begin failing and at most once per
// heartbeatLogEvery while they do, and one line when they work again (a
// flush that sent a batch, sent, and none failed): a Redis outage fails
// every queue's send at each attempt (every 2 s at most), and a line per
// queue per attempt would bury its cause, as for the heartbeat (Serve).
func (r *Reporter) logSends(queues int, sent bool, queue string, reports int, err error) {
	now := time.Now()
	switch {
	case queues > 0 && (r.failingSince.IsZero() || now.Sub(r.loggedAt) >= heartbeatLogEvery):
		if r.failingSince.IsZero() {
			r.failingSince = now
		}
		r.loggedAt = now
		r.logger.Error("fair: send completion reports", slog.Int("queues_failed", queues), slog.String("queue", queue),
			slog.Int("reports", reports), slog.Duration("failing_for", now.Sub(r.failingSince)), slog.String("error", err.Error()))
	case queues == 0 && sent && !r.failingSince.IsZero():
		r.logger.Info("fair: completion reports sent again", slog.Duration("failed_for", now.Sub(r.failingSince)))
		r.failingSince = time.Time{}
	}
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

// heartbeatLogEvery is how often Serve logs heartbeats that keep failing.
const heartbeatLogEvery = time.Minute

// Serve keeps the worker registered until ctx is done, then removes it.
// The live workers' summed concurrency sizes how many tasks the
// dispatcher keeps pending in each queue. Errors are retried at the next
// interval and logged as one line when they start (how many queues
// failed, the first one's error), at most once a minute while they last,
// and one when heartbeats work again. Each round also adds the queues to
// asynq's set of queues (one command), which the dashboard lets an
// operator take a queue out of while asynq holds none of its tasks.
func (d *Dispatcher) Serve(ctx context.Context, m Membership, logger *slog.Logger) {
	logger = cmp.Or(logger, slog.Default())
	interval := cmp.Or(m.Interval, time.Second)
	ttl := 5 * interval
	// A round's failures are logged as one line, when they start and then
	// at most once per heartbeatLogEvery while they last, and their end as
	// another: a Redis outage fails every queue's heartbeat every interval,
	// and one line per queue per beat (48 a second with QUEUE_SHARDS=16)
	// would bury its cause.
	var failingSince, loggedAt time.Time
	served := make([]any, len(m.Queues))
	for i, q := range m.Queues {
		served[i] = q
	}
	beat := func(ctx context.Context, concurrency int) {
		hs := &holdings{} // read at most once a round, only when a queue lost its holds
		var failed []string
		var firstErr error
		for _, q := range m.Queues {
			healed, err := d.heartbeat(ctx, q, m.ID, concurrency, ttl, hs)
			if err != nil && ctx.Err() == nil {
				failed = append(failed, q)
				if firstErr == nil {
					firstErr = err
				}
			}
			if healed.Held > 0 || healed.HeldBack > 0 {
				logger.Warn("fair: put back holds Redis lost", slog.String("queue", q),
					slog.Int("tenants_held", healed.Held), slog.Int("admitted_held_back", healed.HeldBack))
				healed.Held, healed.HeldBack = 0, 0
			}
			if healed != (Healed{}) {
				logger.Warn("fair: repaired dispatch state Redis lost", slog.String("queue", q),
					slog.Int("waiting_requeued", healed.Requeued), slog.Int("admitted_repaired", healed.Admitted),
					slog.Int("tenants_readied", healed.Readied))
			}
		}
		// asynq's set of queues, which its inspector, the dashboard and
		// the worker's asynq queue metrics list, loses a queue the
		// dashboard deletes while asynq holds no task of it (common here:
		// the work waits in the backlogs), and the processes add a queue
		// to it once: one command a round puts the served queues back.
		if concurrency > 0 && len(m.Queues) > 0 {
			if err := d.rdb.SAdd(ctx, allQueuesKey, served...).Err(); err != nil && ctx.Err() == nil {
				failed = append(failed, m.Queues[0])
				if firstErr == nil {
					firstErr = fmt.Errorf("fair: register the served queues: %w", err)
				}
			}
		}
		now := time.Now()
		switch {
		case len(failed) > 0 && (failingSince.IsZero() || now.Sub(loggedAt) >= heartbeatLogEvery):
			if failingSince.IsZero() {
				failingSince = now
			}
			loggedAt = now
			logger.Warn("fair: worker heartbeat", slog.Int("queues_failed", len(failed)), slog.Int("queues", len(m.Queues)),
				slog.String("queue", failed[0]), slog.Duration("failing_for", now.Sub(failingSince)),
				slog.String("error", firstErr.Error()))
		case len(failed) == 0 && !failingSince.IsZero() && ctx.Err() == nil:
			logger.Info("fair: worker heartbeats work again", slog.Duration("failed_for", now.Sub(failingSince)))
			failingSince = time.Time{}
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
