package tenantctx_test

import (
	"errors"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/tenantctx"
)

// TestValidateTimeZone: IANA names the embedded zone database knows are
// accepted; "", "Local" (the host's zone), unknown and overlong names are
// refused with ErrInvalidTimeZone, and a tenant holding one does not
// validate.
func TestValidateTimeZone(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"UTC", "Europe/Berlin", "Pacific/Auckland", "America/Los_Angeles", "America/Argentina/Buenos_Aires", "Etc/GMT+5"} {
		if err := tenantctx.ValidateTimeZone(ok); err != nil {
			t.Errorf("ValidateTimeZone(%q) = %v, want nil", ok, err)
		}
	}
	tn, err := tenantctx.New("acme", "Acme", "pro")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "Local", "Mars/Olympus_Mons", "europe/berlin ", "../../etc/passwd", "Europe/" + string(make([]byte, 80))} {
		if err := tenantctx.ValidateTimeZone(bad); !errors.Is(err, tenantctx.ErrInvalidTimeZone) {
			t.Errorf("ValidateTimeZone(%q) = %v, want ErrInvalidTimeZone", bad, err)
		}
		if bad == "" {
			continue // a tenant without one is in DefaultTimeZone
		}
		tn.TimeZone = bad
		if err := tn.Validate(); !errors.Is(err, tenantctx.ErrInvalidTimeZone) {
			t.Errorf("tenant in %q: Validate = %v, want ErrInvalidTimeZone", bad, err)
		}
	}
}

// TestTenantToday: a tenant's today is the date in its zone; a tenant
// without one (built in code, or cached by a release without zones) and a
// new one are in UTC.
func TestTenantToday(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fresh, err := tenantctx.New("acme", "Acme", "pro")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tn   tenantctx.Tenant
		name string
		day  string
	}{
		{tenantctx.Tenant{}, "UTC", "2026-03-01"},
		{fresh, "UTC", "2026-03-01"},
		{tenantctx.Tenant{TimeZone: "Pacific/Auckland"}, "Pacific/Auckland", "2026-03-02"},
		{tenantctx.Tenant{TimeZone: "America/Los_Angeles"}, "America/Los_Angeles", "2026-03-01"},
		{tenantctx.Tenant{TimeZone: "Pacific/Kiritimati"}, "Pacific/Kiritimati", "2026-03-02"},
		{tenantctx.Tenant{TimeZone: "Pacific/Pago_Pago"}, "Pacific/Pago_Pago", "2026-03-01"},
	} {
		if got := c.tn.TimeZoneName(); got != c.name {
			t.Errorf("TimeZone %q: TimeZoneName = %q, want %q", c.tn.TimeZone, got, c.name)
		}
		if got := c.tn.Today(now).Format(time.DateOnly); got != c.day {
			t.Errorf("TimeZone %q: Today(%s) = %s, want %s", c.tn.TimeZone, now.Format(time.RFC3339), got, c.day)
		}
	}
}

// TestLocationIsLoadedOnce: a tenant's location is read and parsed once
// per process, not for every task that judges a date (time.LoadLocation
// reads the zone's file on each call): the same *time.Location comes
// back, and Location allocates nothing.
func TestLocationIsLoadedOnce(t *testing.T) {
	ten := tenantctx.Tenant{ID: "acme", TimeZone: "America/New_York"}
	first := ten.Location()
	if first.String() != "America/New_York" {
		t.Fatalf("Location() = %v, want America/New_York", first)
	}
	if again := ten.Location(); again != first {
		t.Errorf("Location() returned a new *time.Location on its second call: the zone was loaded again")
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = ten.Location() }); allocs != 0 {
		t.Errorf("Location() allocates %v times a call, want 0 (a loaded zone is kept)", allocs)
	}
	if _, err := tenantctx.LoadTimeZone("Mars/Olympus_Mons"); err == nil {
		t.Errorf("LoadTimeZone(Mars/Olympus_Mons) = nil error after loading others")
	}
}

// TestTenantDayAndStart: a tenant's day is its local date (a reminder's
// once-a-day key), and the day starts at its local midnight; on a day a
// clock change skips midnight (Santiago, 6 September 2026: 00:00 becomes
// 01:00), at the change, not at 23:00 the evening before; on a day whose
// first hours a clock set back repeats (Amman, 29 October 2021: 01:00
// +03 became 00:00 +02; Casey, 9 March 2023: 03:00 +11 became 00:00 +08),
// at its first midnight, not at the second, an hour or three into the
// day. The instant before a day's start is on the day before.
func TestTenantDayAndStart(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		zone, now, day, start string // now and start in RFC 3339, UTC
	}{
		{"", "2026-12-08T04:59:00Z", "2026-12-08", "2026-12-08T00:00:00Z"},
		{"America/New_York", "2026-12-08T04:59:00Z", "2026-12-07", "2026-12-07T05:00:00Z"},
		{"America/New_York", "2026-07-08T03:59:00Z", "2026-07-07", "2026-07-07T04:00:00Z"},
		{"Asia/Tokyo", "2026-12-06T15:05:00Z", "2026-12-07", "2026-12-06T15:00:00Z"},
		{"Pacific/Auckland", "2026-12-06T11:00:00Z", "2026-12-07", "2026-12-06T11:00:00Z"},
		{"America/Santiago", "2026-09-06T12:00:00Z", "2026-09-06", "2026-09-06T04:00:00Z"},
		{"Asia/Amman", "2021-10-29T10:00:00Z", "2021-10-29", "2021-10-28T21:00:00Z"},
		{"Antarctica/Casey", "2023-03-09T04:00:00Z", "2023-03-09", "2023-03-08T13:00:00Z"},
	} {
		now, err := time.Parse(time.RFC3339, c.now)
		if err != nil {
			t.Fatal(err)
		}
		tn := tenantctx.Tenant{TimeZone: c.zone}
		if got := tn.Day(now); got != c.day {
			t.Errorf("TimeZone %q: Day(%s) = %s, want %s", c.zone, c.now, got, c.day)
		}
		start := tenantctx.StartOfDay(tn.Today(now))
		if got := start.UTC().Format(time.RFC3339); got != c.start {
			t.Errorf("TimeZone %q: StartOfDay(Today(%s)) = %s, want %s", c.zone, c.now, got, c.start)
		}
		if got := start.Format(time.DateOnly); got != c.day {
			t.Errorf("TimeZone %q: StartOfDay(Today(%s)) is on %s locally, want %s", c.zone, c.now, got, c.day)
		}
		if got := start.Add(-time.Nanosecond).Format(time.DateOnly); got == c.day {
			t.Errorf("TimeZone %q: the instant before the start of %s (%s) is on %s too", c.zone, c.day, c.start, got)
		}
		if got := tenantctx.StartOfDay(start.Add(-time.Nanosecond)); !got.Before(start) {
			t.Errorf("TimeZone %q: the day before %s starts at %s, not before it", c.zone, c.day, got)
		}
	}
}
