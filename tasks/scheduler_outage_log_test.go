package tasks

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestSchedulerLogsAFailingEnqueueOnceAMinute: while Redis refuses the
// sweep's enqueue, which the loop retries every RetryInterval until the next
// tick, the loop logs an error when the enqueues begin failing and at most
// once a minute while they fail (naming the tick's task), not one per
// attempt; and one line when an enqueue works again.
func TestSchedulerLogsAFailingEnqueueOnceAMinute(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(testContext(t))
	opt, rdb := newRedisClient(t)
	enq, _ := newTestEnqueuer(t, opt)
	// Writes refused at once (NOREPLICAS), reads answered: Redis as a
	// failing enqueue meets it, without waiting on a dial per attempt.
	if err := rdb.ConfigSet(ctx, "min-replicas-to-write", "1").Err(); err != nil {
		t.Fatal(err)
	}
	var logs testenv.LogBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	clock := &fakeClock{now: time.Date(2026, 3, 1, 10, 0, 1, 0, time.UTC)}
	log := &tickLog{calls: map[int64][]EnqueueResult{}}
	done := make(chan error, 1)
	go func() {
		done <- RunScheduler(ctx, enq, "@every 1h", SchedulerOptions{Clock: clock, Logger: logger, OnTick: log.onTick,
			RetryInterval: 10 * time.Second, CatchUp: -1})
	}()
	failures := func() int {
		log.mu.Lock()
		defer log.mu.Unlock()
		return len(log.errs)
	}
	tick := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	testenv.WaitFor(t, 30*time.Second, "the loop to wait for the tick", func() bool { return clock.waiting() == 1 })
	clock.set(tick)
	// 19 attempts 10 s apart: 3 minutes of failing enqueues.
	for i := 1; i < 19; i++ {
		testenv.WaitFor(t, 30*time.Second, "a retry wait", func() bool { return clock.waiting() == 1 })
		clock.set(tick.Add(time.Duration(i) * 10 * time.Second))
	}
	testenv.WaitFor(t, 30*time.Second, "the last retry wait", func() bool { return clock.waiting() == 1 })
	if n := failures(); n != 19 {
		t.Fatalf("%d failed attempts, want 19", n)
	}
	if err := rdb.ConfigSet(ctx, "min-replicas-to-write", "0").Err(); err != nil {
		t.Fatal(err)
	}
	clock.set(tick.Add(190 * time.Second))
	testenv.WaitFor(t, 30*time.Second, "the tick's enqueue", func() bool { return log.count(tick.Unix()) == 1 })
	testenv.WaitFor(t, 30*time.Second, "the wait for the next tick", func() bool { return clock.waiting() == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	taskID := SweepOverdue{Tick: tick.Unix()}.Spec().TaskID
	var errorLines, backLines int
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		switch rec["level"] {
		case "ERROR":
			errorLines++
			if rec["task_type"] != TypeSweepOverdue || rec["task_id"] != taskID {
				t.Errorf("error line does not name the tick's task: %s", line)
			}
		case "INFO":
			if strings.Contains(rec["msg"].(string), "again") {
				backLines++
			}
		}
	}
	// One when the enqueues begin failing, then one a minute: at 0, 60,
	// 120 and 180 s.
	if errorLines != 4 {
		t.Errorf("%d error lines for 19 failed attempts over 3 minutes, want 4 (one at the start, one a minute):\n%s", errorLines, logs.String())
	}
	if backLines != 1 {
		t.Errorf("%d lines saying the enqueue works again, want 1:\n%s", backLines, logs.String())
	}
}
