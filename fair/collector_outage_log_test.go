package fair_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestCollectorLogsAFailedScrapeOnce: while Redis does not answer, a
// scrape of the backlog metrics of many queues (QUEUE_SHARDS: a queue per
// shard of each class) logged a warning per queue, 48 lines a scrape with
// 16 shards, every scrape. It logs one line per scrape, naming how many
// queues failed and the first error, and answers the rest of the scrape.
func TestCollectorLogsAFailedScrapeOnce(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedis(t, testenv.RedisOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr(), MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	logs := &testenv.LogBuffer{}
	queues := []string{"critical", "default", "low", "critical:1", "default:1", "low:1"}
	reg := prometheus.NewRegistry()
	reg.MustRegister(fair.New(rdb, fair.Config{}).NewCollector(queues, 3, slog.New(slog.NewTextHandler(logs, nil))))
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	if s := logs.String(); s != "" {
		t.Fatalf("a scrape with Redis up logged:\n%s", s)
	}
	rs.Stop(t)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) != 0 {
		t.Errorf("with Redis down the scrape has %d families, want none", len(families))
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "queues_failed=6") || !strings.Contains(lines[0], "queue=critical") {
		t.Fatalf("a failed scrape of %d queues logged %d lines, want one naming queues_failed=6 and the first queue:\n%s",
			len(queues), len(lines), logs.String())
	}
}
