package tasks

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/robfig/cron/v3"
)

// SweepCronVar is the environment variable holding the sweep schedule; parse
// errors name it.
const SweepCronVar = "OVERDUE_SWEEP_CRON"

// Clock is the scheduler's view of time; tests pass a fake one.
type Clock interface {
	Now() time.Time
	// After sends the current time on the returned channel after d.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// SchedulerOptions configures RunScheduler. The zero value is usable.
type SchedulerOptions struct {
	// Logger receives tick logs; nil means slog.Default().
	Logger *slog.Logger
	// Clock is the time source; nil means the real clock.
	Clock Clock
	// RetryInterval is the wait between failed enqueues of one tick (Redis
	// down); retries stop when the next tick is due. 0 means 1 s.
	RetryInterval time.Duration
	// OnTick, when set, is called after every enqueue attempt of a tick
	// (tests and diagnostics).
	OnTick func(tick time.Time, res EnqueueResult, err error)
}

// ParseSchedule parses a sweep schedule: a standard 5-field cron spec
// ("0 * * * *"), a descriptor ("@hourly", "@every 30s"), optionally
// prefixed with CRON_TZ=Zone. Specs without a zone run in UTC, so that
// replicas in different time zones agree on the ticks. Errors name
// OVERDUE_SWEEP_CRON.
func ParseSchedule(spec string) (cron.Schedule, error) {
	if spec == "" {
		return nil, fmt.Errorf("%s: empty schedule", SweepCronVar)
	}
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid schedule %.80q: %w", SweepCronVar, spec, err)
	}
	if NextTick(s, time.Now()).IsZero() {
		// A date that never comes (30 February): robfig/cron's Next gives
		// up and returns the zero time.
		return nil, fmt.Errorf("%s: schedule %.80q never fires", SweepCronVar, spec)
	}
	return s, nil
}

// NextTick returns the first tick of s strictly after t. Every replica
// computes the same ticks: cron specs are wall-clock aligned already, and
// "@every d" ticks are aligned to multiples of d since the Unix epoch
// (robfig/cron would count d from each process's start, so two replicas
// started apart would tick at different times and both sweep).
func NextTick(s cron.Schedule, t time.Time) time.Time {
	if every, ok := s.(cron.ConstantDelaySchedule); ok {
		return t.UTC().Truncate(every.Delay).Add(every.Delay)
	}
	return s.Next(t.UTC())
}

// RunScheduler enqueues sweep:overdue once per tick of spec until ctx is
// done, then returns nil. The task id is derived from the tick time
// (SweepOverdue{Tick}), so any number of replicas running this loop
// produce one sweep per tick (P10 in docs/architecture.md). A failed enqueue is retried
// until the next tick is due; ticks missed while the process was busy or
// asleep are skipped, not caught up. It returns an error only for an
// invalid spec, or one whose ticks end (robfig/cron finds none within
// five years).
func RunScheduler(ctx context.Context, enq *Enqueuer, spec string, opts SchedulerOptions) error {
	sched, err := ParseSchedule(spec)
	if err != nil {
		return err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	clock := opts.Clock
	if clock == nil {
		clock = realClock{}
	}
	retry := opts.RetryInterval
	if retry <= 0 {
		retry = time.Second
	}
	logger.InfoContext(ctx, "sweep scheduler started", slog.String("schedule", spec))
	defer logger.InfoContext(ctx, "sweep scheduler stopped")

	tick := NextTick(sched, clock.Now())
	for {
		if !sleepUntil(ctx, clock, tick) {
			return nil
		}
		next := NextTick(sched, tick)
		for {
			res, err := enq.Enqueue(ctx, SweepOverdue{Tick: tick.Unix()})
			if opts.OnTick != nil {
				opts.OnTick(tick, res, err)
			}
			if err == nil {
				logger.DebugContext(ctx, "sweep tick", slog.Time("tick", tick),
					slog.String("task_id", res.Info.ID), slog.Bool("existing", res.Existing))
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			logger.ErrorContext(ctx, "enqueue sweep", slog.Time("tick", tick), slog.String("error", err.Error()))
			if !clock.Now().Add(retry).Before(next) || !sleepFor(ctx, clock, retry) {
				break
			}
		}
		// Skip ticks that passed while we slept or retried.
		now := clock.Now()
		for !next.IsZero() && !next.After(now) {
			next = NextTick(sched, next)
		}
		if next.IsZero() {
			return fmt.Errorf("%s: schedule %.80q has no tick after %s", SweepCronVar, spec, now.UTC().Format(time.RFC3339))
		}
		tick = next
	}
}

// sleepUntil waits until t or ctx is done; it reports whether t came.
func sleepUntil(ctx context.Context, clock Clock, t time.Time) bool {
	for {
		d := t.Sub(clock.Now())
		if d <= 0 {
			return true
		}
		if !sleepFor(ctx, clock, d) {
			return false
		}
	}
}

func sleepFor(ctx context.Context, clock Clock, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-clock.After(d):
		return true
	}
}
