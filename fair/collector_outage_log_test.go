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
	// The look-ups end with their context, about when the scrape stops
	// waiting for them: on a loaded machine their line may come after.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "queues_failed=") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var lines []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `msg="fair: collect backlog metrics"`) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "queues_failed=6") || !strings.Contains(lines[0], "queue=critical") {
		t.Fatalf("a failed scrape of %d queues logged %d lines of its look-ups, want one naming queues_failed=6 and the first queue:\n%s",
			len(queues), len(lines), logs.String())
	}
}

// TestCollectorAnswersByItsBoundWhileRedisStalls: the backlog metrics'
// look-ups run on a 2 s context, but a connection go-redis opens for them
// first sends HELLO bounded by the client's read timeout alone: with Redis
// stalled (SIGSTOP: the kernel still accepts the connection) a scrape
// waited for that timeout (3 s by default; here 30 s), the rest of the
// scrape with it. The scrape leaves the backlog metrics out after 2 s, and
// one that comes while the look-ups of the last still wait leaves them out
// at once.
func TestCollectorAnswersByItsBoundWhileRedisStalls(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedis(t, testenv.RedisOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr(), MaxRetries: -1, ReadTimeout: 30 * time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	logs := &testenv.LogBuffer{}
	reg := prometheus.NewRegistry()
	reg.MustRegister(fair.New(rdb, fair.Config{}).NewCollector([]string{"default"}, 3, slog.New(slog.NewTextHandler(logs, nil))))
	if families, err := reg.Gather(); err != nil || len(families) != 2 {
		t.Fatalf("scrape with Redis up: %d families, %v", len(families), err)
	}
	_ = rdb.Close() // its connection is gone: the next look-up opens one
	rdb = redis.NewClient(&redis.Options{Addr: rs.Addr(), MaxRetries: -1, ReadTimeout: 30 * time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	reg = prometheus.NewRegistry()
	reg.MustRegister(fair.New(rdb, fair.Config{}).NewCollector([]string{"default"}, 3, slog.New(slog.NewTextHandler(logs, nil))))
	stopper := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { _ = stopper.Close() })
	resume := testenv.StopRedis(t, stopper)
	defer resume()
	for i := range 2 {
		start := time.Now()
		families, err := reg.Gather()
		if took := time.Since(start); took > 15*time.Second {
			t.Fatalf("scrape %d with Redis stalled took %v; want it answered by the collector's bound (2 s)", i+1, took)
		}
		if err != nil || len(families) != 0 {
			t.Fatalf("scrape %d with Redis stalled: %d families, %v; want the backlog metrics left out", i+1, len(families), err)
		}
	}
	if !strings.Contains(logs.String(), "fair: collect backlog metrics") {
		t.Errorf("no warning of the scrapes that left the backlog metrics out:\n%s", logs.String())
	}
}
