package tenantctx

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
	// The zone database is embedded so that a tenant's time zone does not
	// depend on the host's zoneinfo (a distroless image has none).
	_ "time/tzdata"
)

//go:generate go run gen_zones.go

// DefaultTimeZone is the time zone of a tenant provisioned without one and
// of every tenant provisioned before tenants had one.
const DefaultTimeZone = "UTC"

// maxTimeZoneLen bounds a time zone name, in bytes (the longest IANA name
// is about 30).
const maxTimeZoneLen = 64

// ErrInvalidTimeZone is wrapped by ValidateTimeZone's errors.
var ErrInvalidTimeZone = errors.New("invalid time zone")

// ValidateTimeZone checks that name is an IANA time zone name the embedded
// zone database knows (embeddedZones, time/tzdata's names), such as
// "Europe/Berlin" or "UTC". It refuses "" and "Local" (the host's zone,
// which differs from one process to the next), and names only a host's
// zoneinfo has ("localtime", the host's zone again; "posixrules"; the
// "posix/" and "right/" copies): time.LoadLocation reads the host's
// zoneinfo first, so such a name would be accepted on one host and be
// unknown (UTC, Tenant.Location) to a worker on another.
func ValidateTimeZone(name string) error {
	_, err := LoadTimeZone(name)
	return err
}

// LoadTimeZone returns the location of the IANA time zone name, with
// ValidateTimeZone's checks.
func LoadTimeZone(name string) (*time.Location, error) {
	switch {
	case name == "":
		return nil, fmt.Errorf("%w: empty name (want an IANA name such as Europe/Berlin or UTC)", ErrInvalidTimeZone)
	case name == "Local":
		return nil, fmt.Errorf("%w: %q is the host's zone (want an IANA name such as Europe/Berlin or UTC)", ErrInvalidTimeZone, name)
	case len(name) > maxTimeZoneLen:
		return nil, fmt.Errorf("%w: name longer than %d bytes", ErrInvalidTimeZone, maxTimeZoneLen)
	}
	if loc, ok := loadedZones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	if _, known := slices.BinarySearch(embeddedZones, name); !known {
		return nil, fmt.Errorf("%w: unknown zone %.64q (want an IANA name such as Europe/Berlin or UTC)", ErrInvalidTimeZone, name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%w: unknown zone %.64q (want an IANA name such as Europe/Berlin or UTC)", ErrInvalidTimeZone, name)
	}
	actual, _ := loadedZones.LoadOrStore(name, loc)
	return actual.(*time.Location), nil
}

// loadedZones holds each zone LoadTimeZone loaded, by name: time.LoadLocation
// reads and parses the zone's rules (a file of the host's zoneinfo, or the
// embedded copy) on every call, and Tenant.Location runs for every task that
// judges a date. A process keeps the rules it read first; names it refused
// are not kept (only the embedded list's names are loaded, so it holds
// at most about 600 entries).
var loadedZones sync.Map

// TimeZoneName returns the tenant's time zone: TimeZone, or
// DefaultTimeZone when it is empty (a tenant built in code, or read from a
// cache entry of the previous release).
func (t Tenant) TimeZoneName() string {
	if t.TimeZone == "" {
		return DefaultTimeZone
	}
	return t.TimeZone
}

// Location returns the tenant's time zone as a location; UTC when
// TimeZone is empty or one this build does not know (Validate refuses
// those, so only a row written by a newer release can have one), on every
// host alike (LoadTimeZone: never a name only the host's zoneinfo has).
// It logs nothing: the tenant cache (storage.Cache) warns once per tenant
// and zone when it loads a tenant whose zone is not known
// (TimeZoneKnown).
func (t Tenant) Location() *time.Location {
	if t.TimeZone == "" {
		return time.UTC
	}
	loc, err := LoadTimeZone(t.TimeZone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// TimeZoneKnown reports whether this build knows the tenant's time zone:
// TimeZone is empty (DefaultTimeZone) or a name LoadTimeZone accepts.
// Location judges a tenant whose zone it does not know in UTC; only a
// catalog row written by a newer release (whose zone database has a zone
// this one lacks) can hold such a name.
func (t Tenant) TimeZoneKnown() bool {
	if t.TimeZone == "" {
		return true
	}
	_, err := LoadTimeZone(t.TimeZone)
	return err == nil
}

// Today returns now in the tenant's time zone: its date (Format with
// time.DateOnly, Day) is the tenant's current calendar day, the day an
// invoice's due date is judged against.
func (t Tenant) Today(now time.Time) time.Time {
	return now.In(t.Location())
}

// Day returns the tenant's calendar day at now as YYYY-MM-DD (Today's
// date): the day of a reminder's once-a-day key (a reminder task's day,
// its invoice_reminders row).
func (t Tenant) Day(now time.Time) string {
	return t.Today(now).Format(time.DateOnly)
}

// StartOfDay returns the first instant of t's calendar day in t's
// location: its midnight, or, on a day whose midnight a clock change
// skips (daylight saving time starting at 00:00, as in America/Santiago),
// the instant of the change, when the day begins; on a day whose first
// hours a clock set back after midnight reads twice (Asia/Amman, 29
// October 2021: 01:00 +03 became 00:00 +02), its first midnight.
func StartOfDay(t time.Time) time.Time {
	y, m, d := t.Date()
	onDay := func(u time.Time) bool {
		uy, um, ud := u.Date()
		return uy == y && um == m && ud == d
	}
	start := time.Date(y, m, d, 0, 0, 0, 0, t.Location())
	if !onDay(start) {
		// time.Date read the skipped midnight in the offset after the
		// change: an instant of the day before. The day begins when the
		// offset in effect then ends.
		_, end := start.ZoneBounds()
		start = end
	}
	// time.Date may read a midnight that occurs twice in the offset after
	// the clock was set back: the day began in the offset before, at its
	// midnight (or, had that one been skipped, when that offset began).
	for range maxDayTransitions {
		begin, _ := start.ZoneBounds()
		if begin.IsZero() || !onDay(begin.Add(-time.Nanosecond)) {
			break
		}
		before := begin.Add(-time.Nanosecond)
		_, offset := before.Zone()
		first := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Add(-time.Duration(offset) * time.Second).In(t.Location())
		if prev, _ := before.ZoneBounds(); first.Before(prev) {
			first = prev
		}
		start = first
	}
	return start
}

// maxDayTransitions bounds the clock changes StartOfDay looks back across
// within one day: no zone has more than two in a day.
const maxDayTransitions = 4
