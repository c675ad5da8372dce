package fair_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// countCalls is a go-redis hook counting the commands sent (a script's
// EVALSHA and EVAL each count) and those that succeeded.
type countCalls struct{ n, ok *atomic.Int64 }

func (countCalls) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		err := next(ctx, cmd)
		if err == nil {
			h.ok.Add(1)
		}
		return err
	}
}
func (h countCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestReporterLogsARedisOutageOnce: while Redis is down, a Reporter
// holding completion reports of several queues (QUEUE_SHARDS) sends them
// again with a backoff of up to 2 s, and does not log an error per queue
// per attempt: it logs the failure when it starts (naming how many queues
// failed and how many reports wait), at most once a minute while it
// lasts, and its end, as the worker's heartbeat does
// (TestServeLogsARedisOutageOnce). The reports reach the dispatcher once
// Redis is back.
func TestReporterLogsARedisOutageOnce(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedis(t, testenv.RedisOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr(), MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	var calls, sent atomic.Int64
	rdb.AddHook(countCalls{&calls, &sent})
	logs := &testenv.LogBuffer{}
	rep := fair.New(rdb, fair.Config{}).NewReporter(slog.New(slog.NewTextHandler(logs, nil)))
	t.Cleanup(func() { rep.Close(context.Background()) })

	rs.Stop(t)
	for i := range 6 {
		rep.Report(fair.Report{Queue: fmt.Sprintf("default:%d", i%3), TaskID: fmt.Sprintf("invoice:pdf:tn_a:%d", i),
			TenantID: "tn_a", Type: "invoice:pdf", Cost: time.Millisecond})
	}
	// Ten attempts (with its backoff, about 5 s of the outage).
	testenv.WaitFor(t, 30*time.Second, "the Reporter's attempts", func() bool { return calls.Load() >= 10 })
	rs.Start(t)
	// One call per queue (EVALSHA, or EVAL after NOSCRIPT).
	testenv.WaitFor(t, 30*time.Second, "the reports' delivery", func() bool { return sent.Load() >= 3 })
	out := logs.String()
	if n := strings.Count(out, "fair: send completion reports"); n != 1 {
		t.Errorf("a Redis outage logged %d failures to send completion reports, want 1 (the outage, not each queue's each attempt):\n%.3000s", n, out)
	}
	if !strings.Contains(out, "queues_failed=3") || !strings.Contains(out, "reports=6") {
		t.Errorf("the failure's line does not say how many queues failed and how many reports wait:\n%.3000s", out)
	}
	if !strings.Contains(out, "fair: completion reports sent again") {
		t.Errorf("the end of the failure was not logged:\n%.3000s", out)
	}
}
