package tasks

import (
	"sort"
	"testing"
	"time"
)

// refTicks computes, by scanning instants minute by minute, the ticks of a
// zoned 5-field spec as ParseSchedule documents them: a wall time that
// exists fires at its first instant; a wall time inside a spring-forward
// gap fires as far after the gap's start as it is after the gap's first
// wall time; a repeated wall time fires once.
func refTicks(t *testing.T, spec string, loc *time.Location, from, to time.Time) []time.Time {
	s, err := ParseSchedule(spec)
	if err != nil {
		t.Fatal(err)
	}
	w := s.(wallSchedule)
	matches := func(wall time.Time) bool {
		// wall is UTC-labelled; does the spec (read in UTC) match it?
		return w.wall.Next(wall.Add(-time.Second)).Equal(wall)
	}
	set := map[int64]bool{}
	var maxSeen time.Time
	var prevWall time.Time
	for i := from; i.Before(to); i = i.Add(time.Minute) {
		l := i.In(loc)
		wall := time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), 0, 0, time.UTC)
		if !prevWall.IsZero() && wall.Sub(prevWall) > time.Minute {
			// gap: walls (prevWall, wall) do not exist; gap starts at instant i
			gapStart := prevWall.Add(time.Minute)
			for g := gapStart; g.Before(wall); g = g.Add(time.Minute) {
				if matches(g) {
					set[i.Add(g.Sub(gapStart)).Unix()] = true
				}
			}
		}
		if wall.After(maxSeen) {
			if matches(wall) {
				set[i.Unix()] = true
			}
			maxSeen = wall
		}
		prevWall = wall
	}
	var out []time.Time
	for u := range set {
		out = append(out, time.Unix(u, 0).UTC())
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Before(out[b]) })
	return out
}

func TestZonedScheduleMatchesReference(t *testing.T) {
	for _, c := range []struct {
		zone, spec string
		from       string
	}{
		{"America/New_York", "30 2 * * *", "2026-03-07T00:00:00Z"},
		{"Europe/Berlin", "15 2 * * *", "2026-03-28T00:00:00Z"},
		{"America/New_York", "0,30 2 * * *", "2026-03-07T00:00:00Z"},
		{"America/New_York", "*/20 * * * *", "2026-03-07T00:00:00Z"},
		{"America/New_York", "*/20 * * * *", "2026-10-31T00:00:00Z"},
		{"America/New_York", "30 1 * * *", "2026-10-31T00:00:00Z"},
		{"Australia/Lord_Howe", "10,35 2 * * *", "2026-10-03T00:00:00Z"},
		{"Australia/Lord_Howe", "*/5 * * * *", "2026-04-04T00:00:00Z"},
		{"America/Santiago", "0 0 * * *", "2026-09-04T00:00:00Z"},
		{"America/Santiago", "30 23 * * *", "2026-04-03T00:00:00Z"},
	} {
		loc, err := time.LoadLocation(c.zone)
		if err != nil {
			t.Fatal(err)
		}
		from, _ := time.Parse(time.RFC3339, c.from)
		to := from.Add(72 * time.Hour)
		spec := "CRON_TZ=" + c.zone + " " + c.spec
		s, _ := ParseSchedule(spec)
		ref := refTicks(t, spec, loc, from.Add(-48*time.Hour), to.Add(48*time.Hour))
		fails := 0
		for at := from; at.Before(to); at = at.Add(time.Minute) {
			want := time.Time{}
			for _, r := range ref {
				if r.After(at) {
					want = r
					break
				}
			}
			if got := NextTick(s, at); !got.Equal(want) {
				t.Errorf("%s: NextTick from %s (%s) = %s (%s), want %s (%s)", spec,
					at.UTC().Format(time.RFC3339), at.In(loc).Format("15:04 MST"),
					got.UTC().Format(time.RFC3339), got.In(loc).Format("Jan 2 15:04 MST"),
					want.UTC().Format(time.RFC3339), want.In(loc).Format("Jan 2 15:04 MST"))
				if fails++; fails > 3 {
					break
				}
			}
		}
	}
}

// TestGapTicksOfOneHourAllFire: "0,30 2 * * *" in New York on the
// spring-forward day: 02:00 and 02:30 do not exist; ParseSchedule's doc says
// each fires at the same offset after the gap (03:00 and 03:30 EDT). The
// scheduler chains NextTick from the previous tick.
func TestGapTicksOfOneHourAllFire(t *testing.T) {
	s, err := ParseSchedule("CRON_TZ=America/New_York 0,30 2 * * *")
	if err != nil {
		t.Fatal(err)
	}
	at, _ := time.Parse(time.RFC3339, "2026-03-07T12:00:00Z")
	var got []string
	for range 3 {
		at = NextTick(s, at)
		got = append(got, at.UTC().Format(time.RFC3339))
	}
	want := []string{"2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z", "2026-03-09T06:00:00Z"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ticks %v, want %v", got, want)
		}
	}
}
