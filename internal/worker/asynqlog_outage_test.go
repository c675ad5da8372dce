package worker_test

import (
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
)

// TestAsynqOutageLinesAreLoggedOnceAMinute: while Redis is down, asynq's
// server logs the same few errors again and again (its forwarder every
// DelayedTaskCheckInterval, 1 s; its processor's dequeue every 3 s, its
// heartbeat every 5 s, its janitor per queue). Each of them goes to the log
// when it first comes and then at most once a minute, saying how many like
// it were left out; lines about a task, info lines and Fatal are never
// left out.
func TestAsynqOutageLinesAreLoggedOnceAMinute(t *testing.T) {
	t.Parallel()
	var buf testenv.LogBuffer
	l := worker.NewAsynqLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	clock := testenv.NewManualClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	worker.SetAsynqLoggerClock(l, clock.Now)
	exited := 0
	worker.SetExit(l, func(code int) { exited++ })

	// The lines of a 150 s outage, as asynq v0.26 logs them (their error
	// differs as the server goes from refusing to not answering).
	for s := range 150 {
		refused := "dial tcp 10.0.0.7:6379: connect: connection refused"
		if s%2 == 1 {
			refused = "dial tcp 10.0.0.7:6379: i/o timeout"
		}
		l.Error("Failed to forward scheduled tasks: INTERNAL_ERROR: INTERNAL_ERROR: redis eval error: " + refused)
		if s%3 == 0 {
			l.Error("Dequeue error: UNKNOWN: redis eval error: " + refused)
		}
		if s%5 == 0 {
			l.Error("Failed to write server state data: UNKNOWN: redis command error: SADD failed: " + refused)
			l.Info("Send signal TSTP to stop processing new tasks")
		}
		if s == 70 {
			l.Warn("Retry exhausted for task id=invoice:pdf:tn_a:1")
			l.Warn("Retry exhausted for task id=invoice:pdf:tn_a:2")
			l.Fatal("Failed to forward scheduled tasks: cannot continue")
		}
		clock.Advance(time.Second)
	}

	count := map[string]int{}
	suppressed := map[string][]float64{}
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		key, _, _ := strings.Cut(rec["msg"].(string), ":")
		if strings.HasPrefix(key, "Retry exhausted") {
			key = rec["msg"].(string)
		}
		count[key]++
		if n, ok := rec["suppressed"].(float64); ok {
			suppressed[key] = append(suppressed[key], n)
		}
	}
	// At 0, 60 and 120 s; the second and third say how many they stand
	// for (59 of the forwarder's lines, 19 of the dequeue's, 11 of the
	// heartbeat's).
	for key, want := range map[string]int{
		"Failed to forward scheduled tasks":              3 + 1, // and Fatal's
		"Dequeue error":                                  3,
		"Failed to write server state data":              3,
		"Send signal TSTP to stop processing new tasks":  30,
		"Retry exhausted for task id=invoice:pdf:tn_a:1": 1,
		"Retry exhausted for task id=invoice:pdf:tn_a:2": 1,
	} {
		if count[key] != want {
			t.Errorf("%d lines %q, want %d:\n%s", count[key], key, want, buf.String())
		}
	}
	if got := suppressed["Dequeue error"]; len(got) != 2 || got[0] != 19 || got[1] != 19 {
		t.Errorf("dequeue lines say %v were left out, want [19 19]", got)
	}
	if exited != 1 {
		t.Errorf("Fatal exited %d times, want 1", exited)
	}
}

// TestAsynqLinesOfOneComponentAreNotLumpedTogether: asynq prefixes the
// lines of its recoverer with "recoverer: " and its internal errors with
// "asynq: ", and puts the error after a further ": ". The lines spaced
// apart are those alike up to that error, so the recoverer's failed
// listing while Redis is down does not hide, for a minute, its failure to
// archive or retry a task whose lease expired, nor its warning about one
// queue another queue's.
func TestAsynqLinesOfOneComponentAreNotLumpedTogether(t *testing.T) {
	t.Parallel()
	var buf testenv.LogBuffer
	l := worker.NewAsynqLogger(slog.New(slog.NewJSONHandler(&buf, nil)))
	clock := testenv.NewManualClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	worker.SetAsynqLoggerClock(l, clock.Now)

	lines := []string{
		"recoverer: could not list lease expired tasks: UNKNOWN: redis command error: ZRANGEBYSCORE failed: dial tcp 10.0.0.7:6379: connect: connection refused",
		`recoverer: could not reclaim stale aggregation sets in queue "critical": UNKNOWN: redis eval error: dial tcp 10.0.0.7:6379: connect: connection refused`,
		`recoverer: could not reclaim stale aggregation sets in queue "default": UNKNOWN: redis eval error: dial tcp 10.0.0.7:6379: connect: connection refused`,
		"recoverer: could not move task to archive: UNKNOWN: redis eval error: OOM command not allowed when used memory > 'maxmemory'.",
		"recoverer: could not retry lease expired task: UNKNOWN: redis eval error: OOM command not allowed when used memory > 'maxmemory'.",
	}
	for _, line := range lines {
		l.Warn(line)
		clock.Advance(time.Second)
	}
	// The same lines again within the minute are left out.
	for _, line := range lines {
		l.Warn(line)
	}
	var got []string
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		got = append(got, rec["msg"].(string))
	}
	if !slices.Equal(got, lines) {
		t.Errorf("logged:\n%s\nwant each of the %d lines once", strings.Join(got, "\n"), len(lines))
	}
}
