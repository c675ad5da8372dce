package testenv

import (
	"testing"
	"time"
)

// pastMidnight is how long after a UTC midnight OneUTCDay lets a test
// start: every process of the test reads the same clock, so a little is
// enough for all of them to be on the new day.
const pastMidnight = 2 * time.Second

// OneUTCDay keeps a test that runs live processes on the real clock within
// one UTC day, the day of tenants in UTC (the default time zone): a test
// whose counts or queue contents hold for one day only (at most one
// reminder per invoice per tenant day, and the scheduler's overdue sweep
// reminding every overdue invoice again on the next) fails when a
// run crosses midnight. When the next UTC midnight comes within d of now
// (d: the longest the test is expected to run), OneUTCDay waits until just
// past it, logging why, and returns; otherwise it returns at once. Call it
// first, before the test starts its processes. A test whose deadline
// (go test -timeout) leaves no room for the wait and d after it is skipped,
// with the reason.
func OneUTCDay(t testing.TB, d time.Duration) {
	t.Helper()
	oneUTCDayAt(t, d, time.Now, time.Sleep)
}

// oneUTCDayAt is OneUTCDay on the clock now, waiting with sleep.
func oneUTCDayAt(t testing.TB, d time.Duration, now func() time.Time, sleep func(time.Duration)) {
	t.Helper()
	start := now()
	wait := waitForOneUTCDay(start, d)
	if wait == 0 {
		return
	}
	if dt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, ok := dt.Deadline(); ok && start.Add(wait+d).After(deadline) {
			t.Skipf("the test may run past the next UTC midnight (%s, in %v; the test takes up to %v), and its deadline %s leaves no time to wait for it",
				nextUTCMidnight(start).Format(time.RFC3339), nextUTCMidnight(start).Sub(start).Round(time.Second), d, deadline.UTC().Format(time.RFC3339))
		}
	}
	t.Logf("the test may run past the next UTC midnight (%s, in %v; the test takes up to %v), where a second day's reminders would begin: waiting %v, until just past it",
		nextUTCMidnight(start).Format(time.RFC3339), nextUTCMidnight(start).Sub(start).Round(time.Second), d, wait.Round(time.Second))
	for {
		sleep(wait)
		if wait = waitForOneUTCDay(now(), d); wait == 0 {
			return
		}
	}
}

// waitForOneUTCDay returns how long a test starting at now that takes up
// to d must wait to run within one UTC day: 0 when it ends before the next
// UTC midnight, else until pastMidnight after it.
func waitForOneUTCDay(now time.Time, d time.Duration) time.Duration {
	next := nextUTCMidnight(now)
	if now.Add(d).Before(next) {
		return 0
	}
	return next.Add(pastMidnight).Sub(now)
}

// nextUTCMidnight returns the first UTC midnight after now.
func nextUTCMidnight(now time.Time) time.Time {
	y, m, day := now.UTC().Date()
	return time.Date(y, m, day+1, 0, 0, 0, 0, time.UTC)
}
