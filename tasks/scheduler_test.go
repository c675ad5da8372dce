package tasks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // the zones of TestScheduleAcrossDaylightSaving, on machines without tzdata

	"github.com/invoicing/tenantworker/internal/testenv"
)

// fakeClock is a Clock whose time moves only when the test advances it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

// set moves the clock to t and fires every waiter due by then.
func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(t) {
			kept = append(kept, w)
			continue
		}
		w.ch <- t
	}
	c.waiters = kept
}

func (c *fakeClock) waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

func TestParseScheduleNamesVariable(t *testing.T) {
	t.Parallel()
	// "0 0 30 2 *" parses but never fires (30 February): refused, not a
	// scheduler that spins (robfig/cron's Next returns the zero time).
	// An @every under a second or not in whole seconds would run every
	// second (robfig/cron rounds it up to one): refused. CRON_TZ=Local,
	// which robfig/cron would read as UTC here, and which would differ
	// between replicas if read as the machine's zone: refused.
	for _, spec := range []string{"", "every minute", "61 * * * *", "@every 1x", "* * * *", "0 0 30 2 *",
		"@every -30m", "@every 0s", "@every 999ms", "@every 1.5s", "CRON_TZ=UTC @every -1h",
		"CRON_TZ=Local 0 6 * * *", "TZ=Local 0 6 * * *"} {
		_, err := ParseSchedule(spec)
		if err == nil || !strings.HasPrefix(err.Error(), "OVERDUE_SWEEP_CRON: ") {
			t.Errorf("ParseSchedule(%q) = %v, want an error naming OVERDUE_SWEEP_CRON", spec, err)
		}
	}
	for _, spec := range []string{"0 * * * *", "@hourly", "@every 30s", "@every 1s", "@every 1h30m", "CRON_TZ=UTC @every 1m",
		"*/5 * * * *", "CRON_TZ=Europe/Paris 0 6 * * *"} {
		if _, err := ParseSchedule(spec); err != nil {
			t.Errorf("ParseSchedule(%q) = %v", spec, err)
		}
	}
	for _, spec := range []string{"bad spec", "0 0 30 2 *"} {
		err := RunScheduler(context.Background(), nil, spec, SchedulerOptions{})
		if err == nil || !strings.Contains(err.Error(), "OVERDUE_SWEEP_CRON") {
			t.Errorf("RunScheduler with %q = %v", spec, err)
		}
	}
}

func TestNextTick(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		spec string
		from time.Time
		want time.Time
	}{
		{"@every 30s", base.Add(5 * time.Second), base.Add(30 * time.Second)},
		{"@every 30s", base.Add(17*time.Second + 300*time.Millisecond), base.Add(30 * time.Second)},
		{"@every 30s", base.Add(30 * time.Second), base.Add(60 * time.Second)},
		{"@every 1m", base.Add(59 * time.Second), base.Add(time.Minute)},
		{"0 * * * *", base.Add(time.Second), base.Add(time.Hour)},
		{"@hourly", base, base.Add(time.Hour)},
		// A replica in another time zone computes the same UTC tick.
		{"0 0 * * *", base.In(time.FixedZone("X", 5*3600)), time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)},
	}
	for _, c := range cases {
		s, err := ParseSchedule(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := NextTick(s, c.from); !got.Equal(c.want) {
			t.Errorf("NextTick(%s, %s) = %s, want %s", c.spec, c.from, got, c.want)
		}
	}
}

// TestScheduleAcrossDaylightSaving: with CRON_TZ in a zone with daylight
// saving time, a daily tick at a wall time the spring-forward gap skips
// fires after the gap that day, and one at a wall time the fall-back hour
// repeats fires once (robfig/cron alone skips the first and repeats the
// second). Other days are unchanged.
func TestScheduleAcrossDaylightSaving(t *testing.T) {
	t.Parallel()
	utc := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, c := range []struct {
		spec, from string
		want       []string
	}{
		// New York springs forward at 02:00 on 8 March 2026: 02:30 does
		// not exist that day.
		{"CRON_TZ=America/New_York 30 2 * * *", "2026-03-07T12:00:00Z",
			[]string{"2026-03-08T07:30:00Z", "2026-03-09T06:30:00Z", "2026-03-10T06:30:00Z"}},
		// It falls back at 02:00 on 1 November 2026: 01:30 occurs twice.
		{"CRON_TZ=America/New_York 30 1 * * *", "2026-10-31T12:00:00Z",
			[]string{"2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
		// Started during the repeated hour, after the first 01:30: the next
		// day's.
		{"CRON_TZ=America/New_York 30 1 * * *", "2026-11-01T06:10:00Z",
			[]string{"2026-11-02T06:30:00Z"}},
		{"CRON_TZ=Europe/Berlin 0 * * * *", "2026-03-29T00:30:00Z",
			[]string{"2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"}},
		// A frequent spec started during the repeated hour (01:05 EST, its
		// every minute fired already in the first 01:xx): the hour's
		// minutes are skipped, the next tick is 02:00 EST; it never runs out
		// of ticks.
		{"CRON_TZ=America/New_York * * * * *", "2026-11-01T06:05:00Z",
			[]string{"2026-11-01T07:00:00Z", "2026-11-01T07:01:00Z"}},
		{"CRON_TZ=America/New_York */10 * * * *", "2026-11-01T06:05:00Z",
			[]string{"2026-11-01T07:00:00Z", "2026-11-01T07:10:00Z"}},
		// From the first pass of the repeated hour: on to its minutes, then
		// past the second pass.
		{"CRON_TZ=America/New_York */20 * * * *", "2026-11-01T05:30:00Z",
			[]string{"2026-11-01T05:40:00Z", "2026-11-01T07:00:00Z"}},
	} {
		s, err := ParseSchedule(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		at := utc(c.from)
		for i, w := range c.want {
			at = NextTick(s, at)
			if !at.Equal(utc(w)) {
				t.Errorf("%s from %s: tick %d at %s, want %s", c.spec, c.from, i+1, at.UTC().Format(time.RFC3339), w)
				break
			}
		}
	}
}

// tickLog collects OnTick calls of several scheduler loops.
type tickLog struct {
	mu    sync.Mutex
	calls map[int64][]EnqueueResult
	errs  []error
}

func (l *tickLog) onTick(tick time.Time, res EnqueueResult, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.errs = append(l.errs, err)
		return
	}
	l.calls[tick.Unix()] = append(l.calls[tick.Unix()], res)
}

func (l *tickLog) count(tick int64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.calls[tick])
}

// TestSchedulerOneSweepPerTickAcrossReplicas is P10 of docs/architecture.md: two scheduler
// loops, started at different times, on one Redis, over several ticks of
// "@every 30s": both fire every tick, and the queue holds exactly one
// sweep:overdue task per tick.
func TestSchedulerOneSweepPerTickAcrossReplicas(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(testContext(t))
	redis := newRedis(t)
	enq, inspector := newTestEnqueuer(t, redis)
	start := time.Date(2026, 3, 1, 10, 0, 5, 0, time.UTC)
	clockA := &fakeClock{now: start}
	clockB := &fakeClock{now: start.Add(12 * time.Second)} // started 12 s later
	log := &tickLog{calls: map[int64][]EnqueueResult{}}

	var wg sync.WaitGroup
	for _, c := range []*fakeClock{clockA, clockB} {
		wg.Go(func() {
			if err := RunScheduler(ctx, enq, "@every 30s", SchedulerOptions{Clock: c, Logger: discardLogger(), OnTick: log.onTick}); err != nil {
				t.Error(err)
			}
		})
	}
	const ticks = 4
	// Both loops start after the 10:00:00 tick: it is enqueued at their
	// start (RunScheduler's catch-up), once.
	want := []string{fmt.Sprintf("sweep:overdue:%d", start.Truncate(30*time.Second).Unix())}
	for i := 1; i <= ticks; i++ {
		tick := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * 30 * time.Second)
		testenv.WaitFor(t, 30*time.Second, "both loops to wait for the next tick", func() bool { return clockA.waiting() == 1 && clockB.waiting() == 1 })
		// The replicas' clocks disagree by a few hundred milliseconds.
		clockA.set(tick.Add(150 * time.Millisecond))
		clockB.set(tick.Add(400 * time.Millisecond))
		testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("tick %d to fire on both loops", i), func() bool { return log.count(tick.Unix()) == 2 })
		log.mu.Lock()
		res := slices.Clone(log.calls[tick.Unix()])
		log.mu.Unlock()
		if res[0].Existing == res[1].Existing {
			t.Errorf("tick %s: existing=%v,%v; want exactly one new task", tick, res[0].Existing, res[1].Existing)
		}
		if res[0].Info.ID != res[1].Info.ID {
			t.Errorf("tick %s: ids %s and %s differ", tick, res[0].Info.ID, res[1].Info.ID)
		}
		want = append(want, fmt.Sprintf("sweep:overdue:%d", tick.Unix()))
	}
	cancel()
	wg.Wait()
	if len(log.errs) != 0 {
		t.Errorf("enqueue errors: %v", log.errs)
	}
	pending, err := inspector.ListPendingTasks(QueueLow)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pending {
		if p.Type != TypeSweepOverdue {
			t.Errorf("unexpected task %s", p.Type)
		}
		got = append(got, p.ID)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("sweep tasks %v, want one per tick %v", got, want)
	}
}

// stoppableClock is the real clock (Now and timers) whose timers a test
// can stop once every loop waits on one: no tick fires after that, so the
// loops, cancelled then, are stopped between ticks, none in the middle of
// an enqueue.
type stoppableClock struct {
	mu      sync.Mutex
	waiting int  // timers of After not yet fired
	stopped bool // no timer fires any more
}

func (c *stoppableClock) Now() time.Time { return time.Now() }

func (c *stoppableClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiting++
	ch := make(chan time.Time, 1)
	time.AfterFunc(d, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.stopped {
			return
		}
		c.waiting--
		ch <- time.Now()
	})
	return ch
}

// stopOnceWaiting stops the timers if n loops wait on the clock, and
// reports whether it did.
func (c *stoppableClock) stopOnceWaiting(n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiting < n {
		return false
	}
	c.stopped = true
	return true
}

// TestSchedulerRealClock: two loops on "@every 1s" with the real clock
// produce one sweep per elapsed tick.
func TestSchedulerRealClock(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(testContext(t))
	redis := newRedis(t)
	enq, inspector := newTestEnqueuer(t, redis)
	log := &tickLog{calls: map[int64][]EnqueueResult{}}
	clock := &stoppableClock{}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			_ = RunScheduler(ctx, enq, "@every 1s", SchedulerOptions{Clock: clock, Logger: discardLogger(), OnTick: log.onTick})
		})
	}
	// Wait until both loops finished at least two ticks, however long a
	// loaded machine takes to get there.
	testenv.WaitFor(t, 30*time.Second, "two ticks enqueued by both loops", func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		both := 0
		for _, res := range log.calls {
			if len(res) >= 2 {
				both++
			}
		}
		return both >= 2
	})
	// Then stop them between ticks, not in the middle of an enqueue: an
	// enqueue the cancel cuts may still write its tick's task while its
	// loop sees the cancel's error ("3 sweep tasks for 2 ticks"), as when
	// this goroutine is held up past the next tick on a loaded machine.
	testenv.WaitFor(t, 30*time.Second, "both loops to wait for their next tick", func() bool { return clock.stopOnceWaiting(2) })
	cancel()
	wg.Wait()
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.errs) != 0 {
		t.Errorf("enqueue errors: %v", log.errs)
	}
	pending, err := inspector.ListPendingTasks(QueueLow)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != len(log.calls) {
		t.Errorf("%d sweep tasks for %d ticks", len(pending), len(log.calls))
	}
	for tick, res := range log.calls {
		fresh := 0
		for _, r := range res {
			if !r.Existing {
				fresh++
			}
		}
		if fresh != 1 {
			t.Errorf("tick %d: %d fresh tasks of %d enqueues, want 1", tick, fresh, len(res))
		}
	}
}

// TestSchedulerRetriesFailedEnqueue: while Redis refuses, the loop retries
// within the tick's period and moves on; it never exits on its own.
func TestSchedulerRetriesFailedEnqueue(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(testContext(t))
	enq, _ := newTestEnqueuer(t, newRedis(t))
	_ = enq.client.Close() // every enqueue now fails
	clock := &fakeClock{now: time.Date(2026, 3, 1, 10, 0, 1, 0, time.UTC)}
	log := &tickLog{calls: map[int64][]EnqueueResult{}}
	done := make(chan error, 1)
	go func() {
		done <- RunScheduler(ctx, enq, "@every 10s", SchedulerOptions{Clock: clock, Logger: discardLogger(), OnTick: log.onTick, RetryInterval: 4 * time.Second,
			CatchUp: -1}) // the 10:00:00 tick before the start is not enqueued: only 10:00:10's attempts count
	}()
	testenv.WaitFor(t, 30*time.Second, "the loop to wait", func() bool { return clock.waiting() == 1 })
	clock.set(time.Date(2026, 3, 1, 10, 0, 10, 0, time.UTC)) // tick: first attempt fails
	testenv.WaitFor(t, 30*time.Second, "a retry wait", func() bool { return clock.waiting() == 1 })
	clock.set(time.Date(2026, 3, 1, 10, 0, 14, 0, time.UTC)) // second attempt fails; 18 s < 20 s: one more
	testenv.WaitFor(t, 30*time.Second, "another retry wait", func() bool { return clock.waiting() == 1 })
	clock.set(time.Date(2026, 3, 1, 10, 0, 18, 0, time.UTC)) // third fails; 22 s is past the next tick: give up
	testenv.WaitFor(t, 30*time.Second, "the wait for the next tick", func() bool { return clock.waiting() == 1 })
	log.mu.Lock()
	n := len(log.errs)
	log.mu.Unlock()
	if n != 3 {
		t.Errorf("%d failed attempts, want 3", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("RunScheduler = %v after cancel, want nil", err)
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatal(ctx.Err())
	}
}

// TestFiresEveryHour: a schedule fires every hour when it ticks at least
// once in each hour of every day, whatever its zone; a daily schedule, one
// that skips hours or days, or an "@every" longer than an hour does not.
func TestFiresEveryHour(t *testing.T) {
	t.Parallel()
	for spec, want := range map[string]bool{
		"0 * * * *":                       true,
		"@hourly":                         true,
		"*/15 * * * *":                    true,
		"30 * * * *":                      true,
		"* * * * *":                       true,
		"0 0-23 * * *":                    true,
		"0 * 1-31 * 0-6":                  true,
		"CRON_TZ=Europe/Berlin 0 * * * *": true,
		"CRON_TZ=Asia/Kolkata 5 * * * *":  true,
		"@every 1h":                       true,
		"@every 30s":                      true,
		"@every 59m":                      true,
		"0 9 * * *":                       false,
		"@daily":                          false,
		"@weekly":                         false,
		"0 */2 * * *":                     false,
		"0 0-22 * * *":                    false,
		"0 * * * 1-5":                     false,
		"0 * 1-28 * *":                    false,
		"0 * * 1-11 *":                    false,
		"CRON_TZ=Europe/Berlin 0 6 * * *": false,
		"@every 61m":                      false,
		"@every 2h":                       false,
		"@every 24h":                      false,
	} {
		s, err := ParseSchedule(spec)
		if err != nil {
			t.Fatalf("%q: %v", spec, err)
		}
		if got := FiresEveryHour(s); got != want {
			t.Errorf("FiresEveryHour(%q) = %v, want %v", spec, got, want)
		}
	}
}

// TestScheduleZoneOnlyAHostHasIsRefused: CRON_TZ (or TZ) must name a zone
// of the zone database built into the binary, as a tenant's time zone
// must. Names only a host's zoneinfo has are the host's zone again
// ("localtime", like Local), a copy that differs from host to host
// ("posixrules"), or a variant whose clock counts leap seconds ("right/"):
// replicas on different hosts would tick at different times (two sweeps
// where one was meant), and one on a host without zoneinfo (distroless)
// would not start. robfig/cron took each from the host's zoneinfo.
func TestScheduleZoneOnlyAHostHasIsRefused(t *testing.T) {
	t.Parallel()
	for _, spec := range []string{"CRON_TZ=localtime 0 9 * * *", "TZ=localtime 0 9 * * *", "CRON_TZ=posixrules 0 9 * * *",
		"CRON_TZ=right/Europe/Berlin 0 9 * * *", "CRON_TZ=posix/Europe/Berlin 0 9 * * *"} {
		_, err := ParseSchedule(spec)
		if err == nil || !strings.HasPrefix(err.Error(), "OVERDUE_SWEEP_CRON: ") || !strings.Contains(err.Error(), "zone") {
			t.Errorf("ParseSchedule(%q) = %v, want an error naming OVERDUE_SWEEP_CRON and the zone", spec, err)
		}
	}
	for _, spec := range []string{"CRON_TZ=Europe/Berlin 0 9 * * *", "TZ=America/New_York 0 9 * * *", "CRON_TZ=Etc/GMT+5 0 9 * * *"} {
		if _, err := ParseSchedule(spec); err != nil {
			t.Errorf("ParseSchedule(%q) = %v", spec, err)
		}
	}
}
