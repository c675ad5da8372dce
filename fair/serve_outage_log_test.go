package fair_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestServeLogsARedisOutageOnce: while Redis is down, a worker serving
// many queues (QUEUE_SHARDS) does not log one warning per queue per
// heartbeat: it logs the outage when it starts (once, naming how many
// queues failed), at most once a minute while it lasts, and its end.
func TestServeLogsARedisOutageOnce(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedis(t, testenv.RedisOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr(), MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	d := fair.New(rdb, fair.Config{})
	var queues []string
	for i := range 12 {
		queues = append(queues, fmt.Sprintf("default:%d", i))
	}
	logs := &testenv.LogBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		d.Serve(ctx, fair.Membership{ID: "w1", Queues: queues, Concurrency: 2, Interval: 20 * time.Millisecond}, logger)
	})
	time.Sleep(200 * time.Millisecond)
	rs.Stop(t)
	time.Sleep(2 * time.Second) // about 100 heartbeats of 12 queues
	rs.Start(t)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "heartbeats work again") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	out := logs.String()
	failed := strings.Count(out, "fair: worker heartbeat")
	if failed == 0 || failed > 3 {
		t.Errorf("a 2 s Redis outage logged %d heartbeat failures, want 1 to 3 (the outage, not each queue's each beat):\n%.2000s", failed, out)
	}
	if !strings.Contains(out, "fair: worker heartbeats work again") {
		t.Errorf("the end of the outage was not logged:\n%.2000s", out)
	}
}
