package testenv

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// utcDayTB is a testing.TB that records what OneUTCDay logs and skips,
// with a deadline of its own.
type utcDayTB struct {
	testing.TB
	deadline time.Time // zero: none
	logs     []string
	skipped  string
}

func (f *utcDayTB) Helper() {}

func (f *utcDayTB) Logf(format string, args ...any) {
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}

// Skipf records the reason and ends the goroutine, as testing's does.
func (f *utcDayTB) Skipf(format string, args ...any) {
	f.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *utcDayTB) Deadline() (time.Time, bool) { return f.deadline, !f.deadline.IsZero() }

// runOneUTCDay runs oneUTCDayAt for a test of duration d on a clock that
// starts at start and that its sleeps move on, and returns the clock's
// time when it returned (or skipped), and the sleeps.
func runOneUTCDay(tb *utcDayTB, start time.Time, d time.Duration) (time.Time, []time.Duration) {
	clock := start
	var sleeps []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		oneUTCDayAt(tb, d, func() time.Time { return clock }, func(w time.Duration) {
			sleeps = append(sleeps, w)
			clock = clock.Add(w)
		})
	}()
	<-done
	return clock, sleeps
}

// TestOneUTCDay: a test of 5 minutes started at 23:57:30 UTC would run
// into the next day, where the scheduler's sweep reminds every overdue
// invoice again; OneUTCDay has it start just past midnight, so that it
// ends on the day it began. A test that ends before midnight, or one
// started just past it, starts at once; one whose deadline leaves no time
// for the wait is skipped with the reason.
func TestOneUTCDay(t *testing.T) {
	t.Parallel()
	const d = 5 * time.Minute
	day := func(tm time.Time) string { return tm.UTC().Format(time.DateOnly) }

	late := time.Date(2026, 12, 7, 23, 57, 30, 0, time.UTC)
	if day(late) == day(late.Add(d)) {
		t.Fatalf("the forced case does not cross midnight: %s to %s", late, late.Add(d))
	}
	tb := &utcDayTB{TB: t}
	began, sleeps := runOneUTCDay(tb, late, d)
	if want := time.Date(2026, 12, 8, 0, 0, 2, 0, time.UTC); !began.Equal(want) || len(sleeps) != 1 {
		t.Errorf("started at %s after sleeps %v, want %s after one", began, sleeps, want)
	}
	if day(began) != day(began.Add(d)) {
		t.Errorf("the test runs from %s to %s: two UTC days", began, began.Add(d))
	}
	if len(tb.logs) != 1 || !strings.Contains(tb.logs[0], "2026-12-08T00:00:00Z") || !strings.Contains(tb.logs[0], "waiting 2m32s") {
		t.Errorf("logged %q, want why it waits, for how long, and until when", tb.logs)
	}

	// Deadlines: one after the wait and the test is no reason to skip.
	tb = &utcDayTB{TB: t, deadline: late.Add(10 * time.Minute)}
	if began, _ := runOneUTCDay(tb, late, d); tb.skipped != "" || day(began) != "2026-12-08" {
		t.Errorf("with room before its deadline: started at %s, skipped %q; want it started past midnight", began, tb.skipped)
	}
	tb = &utcDayTB{TB: t, deadline: late.Add(6 * time.Minute)}
	if _, sleeps := runOneUTCDay(tb, late, d); !strings.Contains(tb.skipped, "leaves no time to wait") || len(sleeps) != 0 {
		t.Errorf("a deadline before the wait and the test: skipped %q after sleeps %v; want skipped at once, saying why", tb.skipped, sleeps)
	}

	for _, start := range []time.Time{
		time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC),                         // midday
		time.Date(2026, 12, 7, 23, 54, 59, 0, time.UTC),                       // ends a second before midnight
		time.Date(2026, 12, 8, 0, 0, 1, 0, time.UTC),                          // just past it
		time.Date(2026, 12, 7, 18, 0, 0, 0, time.FixedZone("UTC-6", -6*3600)), // a UTC midnight
	} {
		tb := &utcDayTB{TB: t}
		if began, sleeps := runOneUTCDay(tb, start, d); !began.Equal(start) || len(sleeps) != 0 || len(tb.logs) != 0 {
			t.Errorf("a test of %v started at %s: waited %v (%q); want no wait", d, start, sleeps, tb.logs)
		}
	}
	// A test started 6 hours before UTC midnight in its local zone, as
	// late as the forced case in UTC, waits as in UTC.
	local := late.In(time.FixedZone("UTC-6", -6*3600))
	if began, _ := runOneUTCDay(&utcDayTB{TB: t}, local, d); day(began) != "2026-12-08" || day(began) != day(began.Add(d)) {
		t.Errorf("started at %s in UTC-6: runs %s to %s", local, began.UTC(), began.Add(d).UTC())
	}
}
