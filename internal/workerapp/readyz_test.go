package workerapp

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
)

func timedGet(t *testing.T, url string) (int, string, time.Duration) {
	t.Helper()
	start := time.Now()
	code, body := get(t, url)
	return code, body, time.Since(start)
}

// TestReadyzFlipsBack: /readyz turns 503 when PostgreSQL or Redis go
// down (or Redis stalls, answering within its bound) and back to 200 once
// they return.
func TestReadyzFlipsBack(t *testing.T) {
	pg := testenv.StartPostgres(t)
	rs := testenv.StartRedis(t, testenv.RedisOptions{})
	w := startWorkerOn(t, pg.CreateDatabase(t), rs.URL(), map[string]string{"SCHEDULER_ENABLED": "false"})
	url := "http://" + w.addr + "/readyz"
	if code, body, d := timedGet(t, url); code != 200 {
		t.Fatalf("initial /readyz = %d %s (%v)", code, body, d)
	}
	pg.Stop(t)
	code, body, d := timedGet(t, url)
	t.Logf("pg down: %d %s %v", code, body, d)
	if code != 503 {
		t.Errorf("pg down /readyz = %d", code)
	}
	pg.Start(t)
	waitReady(t, url, "after PostgreSQL restart")

	rs.Stop(t)
	code, body, d = timedGet(t, url)
	t.Logf("redis down: %d %s %v", code, body, d)
	if code != 503 {
		t.Errorf("redis down /readyz = %d %s", code, body)
	}
	rs.Start(t)
	waitReady(t, url, "after Redis restart")

	// Redis stalled (SIGSTOP): readyz answers within its bound.
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer rdb.Close()
	resume := testenv.StopRedis(t, rdb)
	code, body, d = timedGet(t, url)
	t.Logf("redis stalled: %d %s %v", code, body, d)
	if code != 503 {
		t.Errorf("redis stalled /readyz = %d %s", code, body)
	}
	// Unbounded, the answer waited for go-redis's own read timeout and
	// retry (5 s); 4 s leaves a loaded machine room past the 2 s bound.
	if d > 4*time.Second {
		t.Errorf("/readyz with Redis stalled took %v, want about readyTimeout %v", d, readyTimeout)
	}
	code, _, d = timedGet(t, "http://"+w.addr+"/metrics")
	t.Logf("metrics with redis stalled: %d %v", code, d)
	// The Redis-backed collectors wait at most about 2 s (asynq's queue
	// metrics, the backlogs); unbounded, the scrape took 5 s.
	if code != 200 || d > 4*time.Second {
		t.Errorf("/metrics with Redis stalled = %d after %v, want 200 within the collectors' bound", code, d)
	}
	resume()
	waitReady(t, url, "after Redis resumed")
}

func waitReady(t *testing.T, url, what string) {
	t.Helper()
	start := time.Now()
	var code int
	var body string
	for time.Since(start) < 20*time.Second {
		code, body = get(t, url)
		if code == 200 {
			t.Logf("%s: ready after %v", what, time.Since(start))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("%s: /readyz still %d %s after 20s", what, code, body)
}

func startWorkerOn(t *testing.T, dbURL, redisURL string, env map[string]string) *runningWorker {
	t.Helper()
	e := map[string]string{"DATABASE_URL": dbURL}
	for k, v := range env {
		e[k] = v
	}
	return startWorker(t, redisURL, e)
}
