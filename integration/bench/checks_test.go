package main

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/config"
)

// A quiet render whose attempt failed must not count as a finished render
// with its time-to-failure as the "wait" (fairness part 1 checks no
// outcome at all).
func TestQuietWaitsRejectsFailedAttempts(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	sent := map[string]time.Time{"q1": t0, "q2": t0.Add(100 * time.Millisecond)}
	events := []finish{
		{TaskID: "q1", TaskType: "invoice:pdf", Outcome: "error", At: t0.Add(10 * time.Millisecond), Duration: 5 * time.Millisecond},
		{TaskID: "q2", TaskType: "invoice:pdf", Outcome: "ok", At: t0.Add(300 * time.Millisecond), Duration: 20 * time.Millisecond},
	}
	qw, err := quietWaits(events, sent, "q1")
	if err == nil {
		t.Errorf("a failed quiet render was accepted: done=%d of %d, waits %v (p50 %v)", qw.done, len(sent), qw.lat, percentile(qw.lat, 50))
	}
}

// Two "task finished" lines of one task (a retry, or a redelivery) must
// not stand in for a quiet render that has not finished.
func TestQuietWaitsCountsDistinctTasks(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	sent := map[string]time.Time{"q1": t0, "q2": t0.Add(100 * time.Millisecond)}
	events := []finish{
		{TaskID: "q1", TaskType: "invoice:pdf", Outcome: "ok", At: t0.Add(40 * time.Millisecond)},
		{TaskID: "q1", TaskType: "invoice:pdf", Outcome: "ok", At: t0.Add(50 * time.Millisecond)},
	}
	qw, _ := quietWaits(events, sent, "q1")
	if qw.done >= len(sent) {
		t.Errorf("q2 never finished, yet done=%d >= %d ends the wait (waits %v)", qw.done, len(sent), qw.lat)
	}
}

// The middleware scenario's drain: a task whose first attempt failed (and
// whose retry then succeeded) must not give a silent tasks/s figure.
func TestDrainReportsFailedAttempts(t *testing.T) {
	ctx := context.Background()
	srv, err := startRedis(ctx, t.TempDir())
	if err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	defer srv.Stop(ctx)
	opt, err := config.ParseRedisURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := opt.MakeRedisClient().(redis.UniversalClient)
	defer rdb.Close()
	d := &drainer{b: &bench{env: &env{rdb: rdb}}, tenants: []string{"tn_review"}, probe: &cpuProbe{}}
	// The retry that then succeeds comes at once, not after the worker's
	// backoff (15 s or more) and asynq's 5 s look at the retry set: the
	// drain still ends with every task done and must report the failure.
	d.configure = func(cfg *asynq.Config) {
		cfg.RetryDelayFunc = func(int, error, *asynq.Task) time.Duration { return 0 }
		cfg.DelayedTaskCheckInterval = 50 * time.Millisecond
	}
	var failedOnce atomic.Bool
	h := asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		if failedOnce.CompareAndSwap(false, true) {
			return errors.New("transient failure")
		}
		d.finished()
		return nil
	})
	start := time.Now()
	rate, _, err := d.drain(ctx, h, 20)
	if err == nil {
		t.Errorf("drain with a failed attempt returned no error: %.1f tasks/s over %s", rate, time.Since(start).Round(time.Millisecond))
	}
}
