package worker_test

import (
	"fmt"
	"testing"
	"time"
)

// TestMidnightTickReminderRunJustBeforeMidnightIsSent: the midnight tick's
// sweep is judged at the tick when the worker's clock is a moment behind
// the scheduler's (TestSweepTickAheadOfTheWorkersClockIsJudgedAtTheTick),
// and so it enqueues the new day's reminders; the worker runs them at once,
// still a moment before midnight by its clock. Such a run is its day's:
// it sends the reminder of 10 March although the reminder of 9 March went
// out that afternoon. Before, it ran as an early reminder, claimed 9 March
// too, found it sent and sent nothing ("already sent on 2026-03-09"), so
// with a daily sweep at the tenant's midnight the reminder of every other
// day was lost. The 10 March sweep later that day sends no second email.
func TestMidnightTickReminderRunJustBeforeMidnightIsSent(t *testing.T) {
	t.Parallel()
	d := newReminderDayIn(t, "America/Bogota")
	id := d.e.addDueOn(t, d.tn, "DUE-MAR-1", "2026-03-01")

	d.at(t, "2026-03-09", 15, 0)
	d.sweep(t, 1)
	if got := d.sentTo(t); fmt.Sprint(got) != fmt.Sprint([]int64{id}) {
		t.Fatalf("after the sweep of 9 March: emails for invoices %v, want [%d]", got, id)
	}

	midnight := d.at(t, "2026-03-10", 0, 0)
	d.e.clock.Store(new(midnight.Add(-500 * time.Millisecond)))
	d.sweep(t, midnight.Unix())
	if got := d.sentTo(t); fmt.Sprint(got) != fmt.Sprint([]int64{id, id}) {
		t.Fatalf("after the midnight tick of 10 March, run 0.5 s before it by the worker's clock: emails for invoices %v, want two for %d", got, id)
	}
	rows := d.e.reminderRows(t, d.tn, id)
	if len(rows) != 2 || rows[0].Day != "2026-03-09" || rows[1].Day != "2026-03-10" || rows[1].Status != "sent" {
		t.Errorf("reminder rows %+v, want 2026-03-09 and 2026-03-10 sent", rows)
	}

	d.at(t, "2026-03-10", 15, 0)
	d.sweep(t, 2)
	if got := d.sentTo(t); fmt.Sprint(got) != fmt.Sprint([]int64{id, id}) {
		t.Fatalf("after a sweep later on 10 March: emails for invoices %v, want two for %d", got, id)
	}
}
