package tasks

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/invoicing/tenantworker/tenantctx"
)

// SweepCronVar is the environment variable holding the sweep schedule; parse
// errors name it.
const SweepCronVar = "OVERDUE_SWEEP_CRON"

// DocumentsCronVar is the environment variable holding the schedule of
// sweep:documents (SweepDocuments); ParseScheduleOf's errors name it.
const DocumentsCronVar = "DOCUMENTS_SWEEP_CRON"

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
	// Task is the task of a tick (its Unix seconds), whose id is derived
	// from the tick; nil means SweepOverdue.
	Task func(tick int64) Payload
	// Var names the schedule's environment variable in errors; "" means
	// SweepCronVar.
	Var string
	// CatchUp is how old a tick that passed may be for the loop to enqueue
	// it late: at the start, the last tick before it (one missed while no
	// replica ran, such as a daily sweep across a restart); while running,
	// the last of the ticks that passed while it slept or retried. 0 means
	// the task's retention (24 h for the sweeps), so that a tick another
	// replica enqueued is found existing, not swept twice; negative means
	// none: passed ticks are skipped.
	CatchUp time.Duration
}

// ParseSchedule parses a sweep schedule: a standard 5-field cron spec
// ("0 * * * *"), a descriptor ("@hourly", "@every 30s"), optionally
// prefixed with CRON_TZ=Zone, an IANA name of the zone database built
// into the binary (tenantctx.ValidateTimeZone: not Local, nor a name only
// a host's zoneinfo has). Specs without a zone run in UTC, so that
// replicas in different time zones agree on the ticks. With a zone that
// has daylight saving time, a tick at a wall time that does not exist that
// day fires after the gap, and one at a wall time that occurs twice fires
// once (wallSchedule). Errors name OVERDUE_SWEEP_CRON.
func ParseSchedule(spec string) (cron.Schedule, error) {
	return ParseScheduleOf(SweepCronVar, spec)
}

// ParseScheduleOf is ParseSchedule with errors naming the environment
// variable name instead of OVERDUE_SWEEP_CRON.
func ParseScheduleOf(name, spec string) (cron.Schedule, error) {
	if spec == "" {
		return nil, fmt.Errorf("%s: empty schedule", name)
	}
	if zone, ok := cronZone(spec); ok {
		if zone == "Local" {
			// robfig/cron would read it as UTC here; read as the machine's
			// zone, replicas in different zones would sweep at different ticks.
			return nil, fmt.Errorf("%s: invalid schedule %.80q: name the zone (CRON_TZ=Europe/Berlin), not Local", name, spec)
		}
		if err := tenantctx.ValidateTimeZone(zone); err != nil {
			// A name only the host's zoneinfo has ("localtime", the
			// machine's zone again; "posixrules"; the "right/" and "posix/"
			// copies) would tick differently from host to host, and not at
			// all on a host without zoneinfo.
			return nil, fmt.Errorf("%s: invalid schedule %.80q: time zone: %w", name, spec, err)
		}
	}
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid schedule %.80q: %w", name, spec, err)
	}
	if d, ok := s.(cron.ConstantDelaySchedule); ok {
		// robfig/cron turns any "@every" under a second (negative and zero
		// included) into one second, and drops fractions of a second: a
		// typo ("@every -30m") would sweep every second on every replica.
		_, after, _ := strings.Cut(spec, "@every") // after a CRON_TZ= prefix too
		every, err := time.ParseDuration(strings.TrimSpace(after))
		if err != nil || every < time.Second || every != d.Delay {
			return nil, fmt.Errorf("%s: invalid schedule %.80q: @every needs a whole number of seconds, at least 1s", name, spec)
		}
	}
	if sp, ok := s.(*cron.SpecSchedule); ok && sp.Location != time.Local && sp.Location != time.UTC {
		s = wallClock(sp)
	}
	if NextTick(s, time.Now()).IsZero() {
		// A date that never comes (30 February): robfig/cron's Next gives
		// up and returns the zero time.
		return nil, fmt.Errorf("%s: schedule %.80q never fires", name, spec)
	}
	return s, nil
}

// cronZone returns the zone a spec's CRON_TZ= (or TZ=) prefix names, as
// robfig/cron reads it, and whether it has one.
func cronZone(spec string) (string, bool) {
	for _, prefix := range []string{"CRON_TZ=", "TZ="} {
		if rest, ok := strings.CutPrefix(spec, prefix); ok {
			zone, _, _ := strings.Cut(rest, " ")
			return zone, true
		}
	}
	return "", false
}

// wallSchedule runs a cron spec on the wall clock of a zone with daylight
// saving time as cron(8) does, where robfig/cron skips or repeats: a tick
// at a wall time the spring-forward gap skips ("30 2 * * *" on that day)
// fires at the same offset after the gap (03:30), instead of not at all,
// and a tick at a wall time the fall-back hour repeats ("30 1 * * *")
// fires once, at its first occurrence, instead of twice.
type wallSchedule struct {
	wall *cron.SpecSchedule // the spec, read in UTC: a clock without gaps or repeats
	loc  *time.Location
}

// wallClock returns sp as a wallSchedule.
func wallClock(sp *cron.SpecSchedule) wallSchedule {
	wall := *sp
	wall.Location = time.UTC
	return wallSchedule{wall: &wall, loc: sp.Location}
}

// maxRepeatedTicks bounds the wall times wallSchedule.Next skips because
// they fired already in a repeated hour: one a minute (the finest a
// 5-field spec has) for a day, far more than any zone repeats.
const maxRepeatedTicks = 24*60 + 1

// Next returns the first tick strictly after t: the next wall-clock match
// of the spec after t's wall time in the zone, at its first instant there
// (after the gap for a wall time that does not exist), skipping every wall
// time whose first instant is not after t (it repeats: it fired already).
// From inside a repeated hour a spec may have a tick each minute of it to
// skip ("* * * * *", "*/10 * * * *").
func (w wallSchedule) Next(t time.Time) time.Time {
	// A wall time in a spring-forward gap fires after the gap, at an
	// instant whose own wall reading is later than the wall time itself
	// (02:30 fires at 03:30): the search starts from t's wall reading
	// under the smallest offset in effect around t, and, since gap ticks
	// and ticks after the gap do not keep their order, takes the earliest
	// instant among the wall times within the offsets' spread of the
	// first one found.
	_, offA := t.Add(-24 * time.Hour).In(w.loc).Zone()
	_, offB := t.Add(24 * time.Hour).In(w.loc).Zone()
	_, offT := t.In(w.loc).Zone()
	lo, hi := min(offA, offB, offT), max(offA, offB, offT)
	wall := t.UTC().Add(time.Duration(lo) * time.Second)
	spread := time.Duration(hi-lo) * time.Second
	var best, bestWall time.Time
	for range maxRepeatedTicks {
		n := w.wall.Next(wall)
		if n.IsZero() || (!best.IsZero() && n.After(bestWall.Add(spread))) {
			break
		}
		if at := w.firstInstant(n); at.After(t) && (best.IsZero() || at.Before(best)) {
			best, bestWall = at, n
		}
		wall = n
	}
	return best
}

// firstInstant returns the first instant at which the zone's clock reads
// wall (a UTC-labelled wall time); for a wall time inside a gap, the
// instant as far after the gap's start as wall is (02:30 in a 02:00-03:00
// gap is 03:30). The zone's offsets a day before and after are taken as
// the two a transition between them can give.
func (w wallSchedule) firstInstant(wall time.Time) time.Time {
	_, offA := wall.Add(-24 * time.Hour).In(w.loc).Zone()
	_, offB := wall.Add(24 * time.Hour).In(w.loc).Zone()
	a := wall.Add(-time.Duration(offA) * time.Second)
	b := wall.Add(-time.Duration(offB) * time.Second)
	if b.Before(a) {
		a, b = b, a
	}
	reads := func(at time.Time) bool {
		l := at.In(w.loc)
		return l.Hour() == wall.Hour() && l.Minute() == wall.Minute() && l.Day() == wall.Day()
	}
	switch {
	case reads(a):
		return a
	case reads(b):
		return b
	}
	return b // in the gap: the later reading, past it
}

// NextTick returns the first tick of s strictly after t. Every replica
// computes the same ticks: cron specs are wall-clock aligned already, and
// "@every d" ticks are aligned to multiples of d since Go's zero time,
// 0001-01-01 00:00 UTC (time.Time.Truncate; not the Unix epoch, which is
// no multiple of d for a d that does not divide a day: "@every 7m" ticks at
// 10:05 UTC, "@every 168h" on Mondays at 00:00 UTC). robfig/cron would count
// d from each process's start, so two replicas started apart would tick at
// different times and both sweep.
func NextTick(s cron.Schedule, t time.Time) time.Time {
	if every, ok := s.(cron.ConstantDelaySchedule); ok {
		return t.UTC().Truncate(every.Delay).Add(every.Delay)
	}
	return s.Next(t.UTC())
}

// FiresEveryHour reports whether s, a schedule ParseSchedule returned,
// ticks at least once in every hour: an "@every" of at most an hour, or a
// cron spec whose hour, day-of-month, month and day-of-week fields leave
// out no hour of any day ("0 * * * *", "*/15 * * * *", "@hourly", with or
// without CRON_TZ=). A daily spec, one every other hour or one on
// weekdays only does not: some hours of some days have no tick.
func FiresEveryHour(s cron.Schedule) bool {
	switch s := s.(type) {
	case cron.ConstantDelaySchedule:
		return s.Delay <= time.Hour
	case wallSchedule:
		return specFiresEveryHour(s.wall)
	case *cron.SpecSchedule:
		return specFiresEveryHour(s)
	}
	return false
}

// specFiresEveryHour reports whether sp matches every hour of every day,
// its days read as robfig/cron reads them: day of month and day of week
// must both match when either is "*", one of them otherwise.
func specFiresEveryHour(sp *cron.SpecSchedule) bool {
	all := func(field uint64, lo, hi uint) bool {
		for i := lo; i <= hi; i++ {
			if field&(1<<i) == 0 {
				return false
			}
		}
		return true
	}
	const starBit = 1 << 63 // robfig/cron's mark of a "*" field
	dom, dow := all(sp.Dom, 1, 31), all(sp.Dow, 0, 6)
	days := dom || dow
	if sp.Dom&starBit != 0 || sp.Dow&starBit != 0 {
		days = dom && dow
	}
	return all(sp.Hour, 0, 23) && all(sp.Month, 1, 12) && days
}

// RunScheduler enqueues sweep:overdue (or opts.Task's task) once per tick
// of spec until ctx is done, then returns nil. The task id is derived from
// the tick time (SweepOverdue{Tick}), so any number of replicas running this loop
// produce one sweep per tick (P10 in docs/architecture.md). A failed enqueue is retried
// until the next tick is due. Ticks that passed while no loop ran (a
// restart across a daily tick) or while this one slept or retried are not
// all lost: the last of them, when it is less than opts.CatchUp old (the
// task's retention by default), is enqueued at once, found existing if a
// replica enqueued it already; the ones before it are skipped. Enqueues
// that keep failing are logged when they begin, at most once a minute
// while they last, and when one works again (enqueueFailures). It returns
// an error only for an invalid spec, or one whose ticks end (robfig/cron
// finds none within five years).
func RunScheduler(ctx context.Context, enq *Enqueuer, spec string, opts SchedulerOptions) error {
	name := cmp.Or(opts.Var, SweepCronVar)
	sched, err := ParseScheduleOf(name, spec)
	if err != nil {
		return err
	}
	task := opts.Task
	if task == nil {
		task = func(tick int64) Payload { return SweepOverdue{Tick: tick} }
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
	window := opts.CatchUp
	if window == 0 {
		window = task(0).Spec().Retention
	}
	logger = logger.With(slog.String("task_type", task(0).TypeName()))
	logger.InfoContext(ctx, "sweep scheduler started", slog.String("schedule", spec))
	defer logger.InfoContext(ctx, "sweep scheduler stopped")

	now := clock.Now()
	tick := NextTick(sched, now)
	if last := lastTick(sched, now, window); !last.IsZero() {
		// The last tick before the start, which no replica may have
		// enqueued (all were down, or this one restarted across it): its
		// task id makes it existing if one did.
		logger.InfoContext(ctx, "enqueueing the last sweep tick before the start", slog.Time("tick", last))
		tick = last
	}
	var failing enqueueFailures
	for {
		if !sleepUntil(ctx, clock, tick) {
			return nil
		}
		if last := lastTick(sched, clock.Now(), window); last.After(tick) {
			// Woken after later ticks (the machine slept): the last of
			// them stands for the ones before it.
			tick = last
		}
		next := NextTick(sched, tick)
		for {
			p := task(tick.Unix())
			res, err := enq.Enqueue(ctx, p)
			if opts.OnTick != nil {
				opts.OnTick(tick, res, err)
			}
			if err == nil {
				failing.works(ctx, logger, clock.Now(), tick, res.Info.ID)
				logger.DebugContext(ctx, "sweep tick", slog.Time("tick", tick),
					slog.String("task_id", res.Info.ID), slog.Bool("existing", res.Existing))
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			failing.failed(ctx, logger, clock.Now(), tick, p.Spec().TaskID, err)
			if !clock.Now().Add(retry).Before(next) || !sleepFor(ctx, clock, retry) {
				break
			}
		}
		// Of the ticks that passed while we slept or retried, the last is
		// enqueued now (when less than the window old), the others skipped.
		now := clock.Now()
		if !next.IsZero() && !next.After(now) {
			if last := lastTick(sched, now, window); !last.IsZero() && last.After(tick) {
				logger.WarnContext(ctx, "sweep ticks passed while the scheduler slept or retried; enqueueing the last",
					slog.Time("tick", last), slog.Time("after", tick))
				next = last
			} else {
				next = NextTick(sched, now)
			}
		}
		if next.IsZero() {
			return fmt.Errorf("%s: schedule %.80q has no tick after %s", name, spec, now.UTC().Format(time.RFC3339))
		}
		tick = next
	}
}

// enqueueFailLogEvery is how often at most RunScheduler logs enqueues of
// its ticks that keep failing.
const enqueueFailLogEvery = time.Minute

// enqueueFailures is what RunScheduler logs of its failing enqueues: one
// error line when they begin to fail, at most one per enqueueFailLogEvery
// while they do (how many attempts failed since the last line, for how
// long), and one line when an enqueue works again. A Redis outage fails
// every attempt, and the loop retries every RetryInterval (1 s) until the
// next tick, an hour or a day away: a line per attempt would be an error
// a second per loop for the whole outage. The attempts in between are
// logged at debug.
type enqueueFailures struct {
	since, loggedAt time.Time // since is zero while enqueues work
	unlogged        int       // failed attempts since the last error line
}

// failed notes a failed enqueue of tick's task taskID at now.
func (f *enqueueFailures) failed(ctx context.Context, logger *slog.Logger, now, tick time.Time, taskID string, err error) {
	f.unlogged++
	if !f.since.IsZero() && now.Sub(f.loggedAt) < enqueueFailLogEvery {
		logger.DebugContext(ctx, "enqueue sweep failed again", slog.Time("tick", tick),
			slog.String("task_id", taskID), slog.String("error", err.Error()))
		return
	}
	if f.since.IsZero() {
		f.since = now
	}
	logger.ErrorContext(ctx, "enqueue sweep", slog.Time("tick", tick), slog.String("task_id", taskID),
		slog.Int("failed_attempts", f.unlogged), slog.Duration("failing_for", now.Sub(f.since)),
		slog.String("error", err.Error()))
	f.loggedAt, f.unlogged = now, 0
}

// works notes an enqueue of tick's task taskID that worked at now, and
// logs that enqueues work again when they were failing.
func (f *enqueueFailures) works(ctx context.Context, logger *slog.Logger, now, tick time.Time, taskID string) {
	if f.since.IsZero() {
		return
	}
	logger.InfoContext(ctx, "enqueue sweep works again", slog.Time("tick", tick), slog.String("task_id", taskID),
		slog.Duration("failed_for", now.Sub(f.since)))
	*f = enqueueFailures{}
}

// lastTick returns the last tick of s at or before now and less than
// window before it, or the zero time when there is none (or window is not
// positive).
func lastTick(s cron.Schedule, now time.Time, window time.Duration) time.Time {
	if window <= 0 {
		return time.Time{}
	}
	from := now.Add(-window)
	if every, ok := s.(cron.ConstantDelaySchedule); ok {
		if t := now.UTC().Truncate(every.Delay); t.After(from) {
			return t
		}
		return time.Time{}
	}
	var last time.Time
	for t := NextTick(s, from); !t.IsZero() && !t.After(now); t = NextTick(s, t) {
		last = t
	}
	return last
}

// maxSleep bounds each wait of sleepUntil: a timer runs on the monotonic
// clock, so a wall clock stepped forward (NTP correcting it, a machine
// resumed from a pause) would otherwise fire a tick as late as the step.
const maxSleep = time.Minute

// sleepUntil waits until t (on the wall clock, read again at least every
// maxSleep) or ctx is done; it reports whether t came.
func sleepUntil(ctx context.Context, clock Clock, t time.Time) bool {
	for {
		d := t.Sub(clock.Now())
		if d <= 0 {
			return true
		}
		if !sleepFor(ctx, clock, min(d, maxSleep)) {
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
