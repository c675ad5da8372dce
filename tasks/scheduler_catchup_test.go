package tasks

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestSchedulerStartedAfterAMissedTickSweepsIt: a daily sweep
// ("CRON_TZ=Europe/Berlin 0 6 * * *", README's example) whose one worker
// restarted across 06:00 (a deploy, a crash) runs that day's sweep at its
// start, instead of none until the next day; a replica started later finds
// it existing (one sweep per tick), and a tick older than a day (the
// sweep's retention: it may have run) is not enqueued again.
func TestSchedulerStartedAfterAMissedTickSweepsIt(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(testContext(t))
	enq, inspector := newTestEnqueuer(t, newRedis(t))
	const spec = "CRON_TZ=Europe/Berlin 0 6 * * *"
	tick := time.Date(2026, 3, 2, 5, 0, 0, 0, time.UTC) // 06:00 CET
	log := &tickLog{calls: map[int64][]EnqueueResult{}}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before the wait
	clocks := []*fakeClock{{now: tick.Add(20 * time.Second)}, {now: tick.Add(3 * time.Minute)}}
	for i, c := range clocks {
		wg.Go(func() {
			if err := RunScheduler(ctx, enq, spec, SchedulerOptions{Clock: c, Logger: discardLogger(), OnTick: log.onTick}); err != nil {
				t.Error(err)
			}
		})
		testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("worker %d to wait for its next tick", i+1), func() bool { return c.waiting() == 1 })
		if n := log.count(tick.Unix()); n != i+1 {
			t.Fatalf("worker %d started %s after the 06:00 tick, which no worker swept: %d enqueues of that tick, want %d",
				i+1, c.Now().Sub(tick), n, i+1)
		}
	}
	log.mu.Lock()
	res := log.calls[tick.Unix()]
	log.mu.Unlock()
	if res[0].Existing || !res[1].Existing {
		t.Errorf("existing = %v, %v; want a new sweep, then the same one", res[0].Existing, res[1].Existing)
	}
	pending, err := inspector.ListPendingTasks(QueueLow)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("sweep:overdue:%d", tick.Unix()); len(pending) != 1 || pending[0].ID != want {
		t.Errorf("%d pending tasks, want one: %s", len(pending), want)
	}

	// A weekly sweep whose last tick is three days old: not enqueued again.
	weekly := &fakeClock{now: time.Date(2026, 3, 5, 12, 0, 0, 0, time.UTC)} // a Thursday
	wg.Go(func() {
		if err := RunScheduler(ctx, enq, "0 0 * * 1", SchedulerOptions{Clock: weekly, Logger: discardLogger(), OnTick: log.onTick}); err != nil {
			t.Error(err)
		}
	})
	testenv.WaitFor(t, 30*time.Second, "the weekly loop to wait", func() bool { return weekly.waiting() == 1 })
	if n := log.count(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC).Unix()); n != 0 {
		t.Errorf("a tick three days old was enqueued %d times at the start, want none", n)
	}
}

// TestSchedulerWokenAfterSeveralTicksSweepsTheLast: a loop woken long
// after the tick it waited for (the machine slept through 11:00, 12:00
// and 13:00) enqueues the last of them, 13:00, at once, not the stale one
// and then nothing until 14:00.
func TestSchedulerWokenAfterSeveralTicksSweepsTheLast(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(testContext(t))
	enq, _ := newTestEnqueuer(t, newRedis(t))
	log := &tickLog{calls: map[int64][]EnqueueResult{}}
	clock := &fakeClock{now: time.Date(2026, 3, 2, 10, 30, 0, 0, time.UTC)}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before the wait
	wg.Go(func() {
		if err := RunScheduler(ctx, enq, "0 * * * *", SchedulerOptions{Clock: clock, Logger: discardLogger(), OnTick: log.onTick}); err != nil {
			t.Error(err)
		}
	})
	testenv.WaitFor(t, 30*time.Second, "the loop to wait for 11:00", func() bool { return clock.waiting() == 1 })
	clock.set(time.Date(2026, 3, 2, 13, 20, 0, 0, time.UTC))
	testenv.WaitFor(t, 30*time.Second, "the loop to wait again", func() bool { return clock.waiting() == 1 })
	if n := log.count(time.Date(2026, 3, 2, 13, 0, 0, 0, time.UTC).Unix()); n != 1 {
		t.Errorf("woken at 13:20 after sleeping through 11:00-13:00: 13:00 enqueued %d times, want 1", n)
	}
}

// stepClock is a Clock whose timers run on a monotonic clock of their own,
// as Go's do, while Now is the wall clock, which an NTP step (or a machine
// resumed from a pause) can move without the timers seeing it.
type stepClock struct {
	mu      sync.Mutex
	wall    time.Time
	mono    time.Duration
	waiters []stepWaiter
}

type stepWaiter struct {
	at time.Duration
	ch chan time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall
}

func (c *stepClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, stepWaiter{at: c.mono + d, ch: ch})
	return ch
}

func (c *stepClock) waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// step moves the wall clock only.
func (c *stepClock) step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wall = c.wall.Add(d)
}

// run lets d pass on both clocks, firing the timers due.
func (c *stepClock) run(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wall, c.mono = c.wall.Add(d), c.mono+d
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at > c.mono {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.wall
	}
	c.waiters = kept
}

// TestSchedulerFollowsAWallClockStep: a worker whose clock NTP corrects
// forward by 5 h while it waits for the daily 06:00 tick (started at
// 00:00 by its wrong clock) sweeps at 06:00 by the corrected clock, not
// 5 h late when a timer set for 6 h ends.
func TestSchedulerFollowsAWallClockStep(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(testContext(t))
	enq, _ := newTestEnqueuer(t, newRedis(t))
	log := &tickLog{calls: map[int64][]EnqueueResult{}}
	clock := &stepClock{wall: time.Date(2026, 3, 2, 0, 0, 30, 0, time.UTC)}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before the wait
	wg.Go(func() {
		if err := RunScheduler(ctx, enq, "0 6 * * *", SchedulerOptions{Clock: clock, Logger: discardLogger(), OnTick: log.onTick}); err != nil {
			t.Error(err)
		}
	})
	tick := time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC)
	testenv.WaitFor(t, 30*time.Second, "the loop to wait for 06:00", func() bool { return clock.waiting() == 1 })
	clock.step(5 * time.Hour) // 05:00:30
	for range 62 {            // 62 minutes: 06:02:30 by the corrected clock
		clock.run(time.Minute)
		testenv.WaitFor(t, 30*time.Second, "the loop to wait", func() bool { return clock.waiting() == 1 })
	}
	if n := log.count(tick.Unix()); n != 1 {
		t.Errorf("at %s by the corrected clock: the 06:00 tick enqueued %d times, want 1", clock.Now().Format(time.TimeOnly), n)
	}
}
