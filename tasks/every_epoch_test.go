package tasks

import (
	"testing"
	"time"
)

// TestEveryTicksAlignAsDocumented checks the alignment NextTick's doc and
// the README give "@every d" ticks: multiples of d since 0001-01-01 UTC
// (Go's zero time), which for a d that does not divide a day are not the
// multiples since the Unix epoch.
func TestEveryTicksAlignAsDocumented(t *testing.T) {
	t.Parallel()
	from := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC) // a Saturday
	for _, c := range []struct{ spec, want string }{
		{"@every 7m", "2026-12-05T10:05:00Z"},
		{"@every 168h", "2026-12-07T00:00:00Z"}, // a Monday
		{"@every 90m", "2026-12-05T10:30:00Z"},
		{"@every 30s", "2026-12-05T10:00:30Z"},
	} {
		s, err := ParseSchedule(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := NextTick(s, from).Format(time.RFC3339); got != c.want {
			t.Errorf("%s after %s: tick %s, want %s", c.spec, from.Format(time.RFC3339), got, c.want)
		}
	}
}
