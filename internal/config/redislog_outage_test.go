package config

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestRedisPoolLinesAreLoggedOnceAMinute: while Redis is down, go-redis's
// pool logs "failed to dial" at every dial that fails (about three lines a
// second for a worker's clients); the process logger writes each kind of
// line (its format) when it first comes and then at most once a minute,
// saying how many like it were left out.
func TestRedisPoolLinesAreLoggedOnceAMinute(t *testing.T) {
	t.Parallel()
	var buf testenv.LogBuffer
	clock := testenv.NewManualClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	l := newRedisLogger(slog.New(slog.NewJSONHandler(&buf, nil)), clock.Now)
	ctx := context.Background()
	for s := range 150 {
		// As go-redis v9 logs them: several clients, each dial failing.
		for c := range 3 {
			// A dial cut short by its caller's deadline reports fewer
			// attempts: a line like the others.
			l.Printf(ctx, "redis: connection pool: failed to dial after %d attempts: %v", 5-c,
				errors.New("dial tcp 10.0.0.7:6379: connect: connection refused"))
		}
		if s%10 == 0 {
			l.Printf(ctx, "redis: connection pool: failed to get a usable connection after %d attempts", 3)
		}
		clock.Advance(time.Second)
	}
	count := map[string]int{}
	var suppressed []float64
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		msg := rec["msg"].(string)
		switch {
		case rec["level"] != "WARN" || rec["component"] != "redis":
			t.Errorf("line %s: want a warning of component redis", line)
		case strings.Contains(msg, "failed to dial"):
			count["dial"]++
			if n, ok := rec["suppressed"].(float64); ok {
				suppressed = append(suppressed, n)
			}
		case strings.Contains(msg, "usable connection"):
			count["usable"]++
		}
	}
	// At 0, 60 and 120 s; the later two stand for 179 lines each.
	if count["dial"] != 3 || count["usable"] != 3 {
		t.Errorf("%d dial lines and %d usable-connection lines for a 150 s outage, want 3 and 3 (one a minute):\n%s",
			count["dial"], count["usable"], buf.String())
	}
	if len(suppressed) != 2 || suppressed[0] != 179 || suppressed[1] != 179 {
		t.Errorf("dial lines say %v were left out, want [179 179]", suppressed)
	}
}

// TestRedisLinesOfOneFormatAboutDifferentThingsAreWritten: go-redis puts
// what a line is about in its format's arguments (the master a Sentinel
// failover went to, the sentinel that failed to answer) and the error in
// another. Lines are alike when they differ in their error only: a second
// failover within the minute, to another master, is written, not left out
// as a line like the first one's, nor is one sentinel's failed look-up
// after another's; the same failover seen by each of the process's
// clients, and a sentinel's look-up failing again with another error, are
// alike.
func TestRedisLinesOfOneFormatAboutDifferentThingsAreWritten(t *testing.T) {
	t.Parallel()
	var buf testenv.LogBuffer
	clock := testenv.NewManualClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	l := newRedisLogger(slog.New(slog.NewJSONHandler(&buf, nil)), clock.Now)
	ctx := context.Background()
	for _, addr := range []string{"10.0.0.8:6379", "10.0.0.9:6379"} {
		for range 3 { // each client of the process
			l.Printf(ctx, "sentinel: new master=%q addr=%q", "mymaster", addr)
		}
		for _, err := range []string{"dial tcp 10.0.0.5:26379: connect: connection refused", "dial tcp 10.0.0.5:26379: i/o timeout"} {
			l.Printf(ctx, "sentinel: GetMasterAddrByName addr=%s, master=%q failed: %s", "10.0.0.5:26379", "mymaster", errors.New(err))
		}
		l.Printf(ctx, "sentinel: GetMasterAddrByName addr=%s, master=%q failed: %s", "10.0.0.6:26379", "mymaster",
			errors.New("dial tcp 10.0.0.6:26379: connect: connection refused"))
		clock.Advance(10 * time.Second)
	}
	var got []string
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		got = append(got, rec["msg"].(string))
	}
	want := []string{
		`sentinel: new master="mymaster" addr="10.0.0.8:6379"`,
		`sentinel: GetMasterAddrByName addr=10.0.0.5:26379, master="mymaster" failed: dial tcp 10.0.0.5:26379: connect: connection refused`,
		`sentinel: GetMasterAddrByName addr=10.0.0.6:26379, master="mymaster" failed: dial tcp 10.0.0.6:26379: connect: connection refused`,
		`sentinel: new master="mymaster" addr="10.0.0.9:6379"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("logged:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
