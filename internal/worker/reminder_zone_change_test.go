package worker_test

import (
	"fmt"
	"testing"
	"time"
)

// TestReminderOncePerLocalDayAcrossATimeZoneChange: a tenant that changes
// its time zone after the day's reminder went out gets no second one that
// day in its new zone, even when its new date is two days from the date
// the reminder was keyed by (zones 25 or 26 hours apart, Kiritimati's +14
// and Pago Pago's -11: the instant a reminder went out on 11 March in
// Kiritimati is 9 March in Pago Pago, and the other way round). Before,
// a sent reminder under another day's key counted only within a day of
// today's date, and the sweep, and a reminder asked for, sent a second
// email minutes after the first. Tokyo to Los Angeles, a day back, is the
// common case.
func TestReminderOncePerLocalDayAcrossATimeZoneChange(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		from, to string
		// first is when the first sweep sends the reminder, in the old
		// zone; second is a sweep later the same day in the new zone.
		first, second string
		// key is the reminder's day in the old zone; today the new
		// zone's date at second.
		key, today string
	}{
		{"Pacific/Kiritimati", "Pacific/Pago_Pago", "2026-03-10T10:30:00Z", "2026-03-10T10:50:00Z", "2026-03-11", "2026-03-09"},
		{"Pacific/Pago_Pago", "Pacific/Kiritimati", "2026-03-10T10:10:00Z", "2026-03-10T10:50:00Z", "2026-03-09", "2026-03-11"},
		{"Asia/Tokyo", "America/Los_Angeles", "2026-03-10T16:00:00Z", "2026-03-10T20:00:00Z", "2026-03-11", "2026-03-10"},
	} {
		t.Run(c.from+" to "+c.to, func(t *testing.T) {
			t.Parallel()
			d := newReminderDayIn(t, c.from)
			id := d.e.addDueOn(t, d.tn, "DUE-MAR-1", "2026-03-01")

			first, err := time.Parse(time.RFC3339, c.first)
			if err != nil {
				t.Fatal(err)
			}
			d.e.clock.Store(&first)
			if got := d.tn.Day(first); got != c.key {
				t.Fatalf("the test's first sweep is on %s in %s, want %s", got, c.from, c.key)
			}
			d.sweep(t, 1)
			if got := d.sentTo(t); fmt.Sprint(got) != fmt.Sprint([]int64{id}) {
				t.Fatalf("after the first sweep: emails for invoices %v, want [%d]", got, id)
			}

			if d.tn, err = d.e.h.Tenancy.SetTimeZone(d.e.ctx, d.tn.ID, c.to, "test"); err != nil {
				t.Fatalf("SetTimeZone(%s): %v", c.to, err)
			}
			second, err := time.Parse(time.RFC3339, c.second)
			if err != nil {
				t.Fatal(err)
			}
			d.e.clock.Store(&second)
			if got := d.tn.Day(second); got != c.today || d.tn.Day(first) != c.today {
				t.Fatalf("the test's sweeps are on %s and %s in %s, want both on %s", d.tn.Day(first), got, c.to, c.today)
			}
			d.sweep(t, 2)
			if got := d.sentTo(t); fmt.Sprint(got) != fmt.Sprint([]int64{id}) {
				t.Fatalf("after a sweep the same day in %s: emails for invoices %v, want only the first for %d", c.to, got, id)
			}
			if got, want := d.remind(t, id, c.today), (reminderOutcome{Reason: "already sent today"}); got != want {
				t.Errorf("reminder asked for the same day in %s: %+v, want %+v", c.to, got, want)
			}
			if got := d.sentTo(t); fmt.Sprint(got) != fmt.Sprint([]int64{id}) {
				t.Fatalf("after a reminder asked for the same day in %s: emails for invoices %v, want only the first for %d", c.to, got, id)
			}
		})
	}
}
