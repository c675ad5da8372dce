package workerapp

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
)

func TestMain(m *testing.M) {
	os.Exit(testenv.MainLeakCheck(m))
}

// runningWorker is a running worker of a test.
type runningWorker struct {
	addr string
	done chan error
	stop context.CancelFunc
}

// startWorker runs RunWith on a fresh database and the given Redis URL
// until the test ends.
func startWorker(t *testing.T, redisURL string, env map[string]string) *runningWorker {
	t.Helper()
	vars := map[string]string{
		"DATABASE_URL":       testenv.Postgres(t),
		"REDIS_URL":          redisURL,
		"HTTP_ADDR":          "127.0.0.1:0",
		"DOCUMENTS_DIR":      t.TempDir(),
		"OUTBOX_DIR":         t.TempDir(),
		"WORKER_CONCURRENCY": "2",
		"SHUTDOWN_TIMEOUT":   "5s",
		"OVERDUE_SWEEP_CRON": "@every 1s",
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := config.FromEnv(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	w := &runningWorker{done: make(chan error, 1), stop: cancel}
	go func() {
		w.done <- RunWith(ctx, cfg, config.NewLogger(cfg, io.Discard), Options{
			Ready: func(a net.Addr) { ready <- a },
		})
	}()
	select {
	case a := <-ready:
		w.addr = a.String()
	case err := <-w.done:
		cancel()
		t.Fatalf("worker exited before it was ready: %v", err)
	case <-time.After(2 * time.Minute): // a bound for the failure message, not a measurement
		cancel()
		t.Fatal("worker not ready after 2 minutes")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(time.Minute):
			t.Error("worker did not stop within a minute")
		}
	})
	return w
}

// newInspector returns an asynq inspector of the Redis at redisURL,
// closed when the test ends.
func newInspector(t *testing.T, redisURL string) *asynq.Inspector {
	t.Helper()
	opt, err := asynq.ParseRedisURI(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	inspector := asynq.NewInspector(opt)
	t.Cleanup(func() { _ = inspector.Close() })
	return inspector
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestRunServesHealthMetricsAndSweeps: a worker on real PostgreSQL and
// Redis answers /healthz, /readyz and /metrics, its scheduler enqueues
// sweeps that its server completes, and it stops cleanly on cancel.
func TestRunServesHealthMetricsAndSweeps(t *testing.T) {
	t.Parallel()
	redisURL := testenv.RedisURL(t)
	w := startWorker(t, redisURL, nil)

	if code, body := get(t, "http://"+w.addr+"/healthz"); code != http.StatusOK || !strings.Contains(body, `"ok"`) {
		t.Errorf("/healthz = %d %s", code, body)
	}
	if code, body := get(t, "http://"+w.addr+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %s", code, body)
	}

	inspector := newInspector(t, redisURL)
	deadline := time.Now().Add(time.Minute)
	for {
		done, err := inspector.ListCompletedTasks(tasks.QueueLow)
		// The sweep:documents of the last 03:30 UTC, enqueued at the
		// scheduler's start (RunScheduler's catch-up), may complete first.
		if err == nil && slices.ContainsFunc(done, func(ti *asynq.TaskInfo) bool { return ti.Type == tasks.TypeSweepOverdue }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no completed sweep after a minute (err %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	code, body := get(t, "http://"+w.addr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`tenantworker_tasks_processed_total{outcome="ok",type="sweep:overdue"}`,
		"tenantworker_task_duration_seconds_bucket",
		"tenantworker_tenant_cache_hits_total",
		// The database breakers' metrics, main known from the start.
		`tenantworker_database_down{database="main"} 0`,
		`tenantworker_database_held_tasks_total{database="main"} 0`,
		// Fair dispatch is on by default: the idle worker waits for its
		// announcements, subscribed.
		"tenantworker_idle_subscribed 1",
		`tenantworker_idle_waits_total{ended="woken"}`,
		"asynq_tasks_processed_total",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, "tenant_id=") {
		t.Errorf("/metrics has a tenant label")
	}

	w.stop()
	select {
	case err := <-w.done:
		if err != nil {
			t.Fatalf("Run = %v after cancel, want nil", err)
		}
		w.done <- nil // for the cleanup
	case <-time.After(time.Minute): // a bound for the failure message, not a measurement
		t.Fatal("worker did not stop within a minute")
	}
	if _, err := http.Get("http://" + w.addr + "/healthz"); err == nil {
		t.Errorf("health server still answers after shutdown")
	}
}

// TestRunServesOnlyItsQueueClasses: a worker with WORKER_QUEUE_CLASSES
// serves those classes only: asynq's server record lists their queues,
// and the sweeps its scheduler puts in the low class stay pending.
func TestRunServesOnlyItsQueueClasses(t *testing.T) {
	t.Parallel()
	redisURL := testenv.RedisURL(t)
	startWorker(t, redisURL, map[string]string{"WORKER_QUEUE_CLASSES": "default,critical"})
	inspector := newInspector(t, redisURL)
	deadline := time.Now().Add(time.Minute)
	var pending, servers int
	for {
		list, err := inspector.Servers()
		if err != nil {
			t.Fatal(err)
		}
		if servers = len(list); servers > 1 {
			t.Fatalf("%d asynq servers, want 1", servers)
		}
		if servers == 1 {
			if q := list[0].Queues; len(q) != 2 || q[tasks.QueueDefault] != 3 || q[tasks.QueueCritical] != 6 {
				t.Fatalf("the server serves %v, want default and critical only", q)
			}
		}
		info, err := inspector.GetQueueInfo(tasks.QueueLow)
		if err == nil {
			pending = info.Pending
			if info.Completed > 0 || info.Active > 0 {
				t.Fatalf("a task of the low class ran on a worker that does not serve it: %+v", info)
			}
		}
		if pending >= 2 && servers == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a minute: %d asynq servers, %d sweeps pending in low (err %v); want 1 server and the sweeps waiting", servers, pending, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReadyzNamesFailedDependency: with Redis down, /readyz is 503 and
// names redis, while /healthz stays 200.
func TestReadyzNamesFailedDependency(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedis(t, testenv.RedisOptions{})
	w := startWorker(t, rs.URL(), map[string]string{"SCHEDULER_ENABLED": "false"})
	rs.Stop(t)
	code, body := get(t, "http://"+w.addr+"/readyz")
	var got struct {
		Status string            `json:"status"`
		Failed map[string]string `json:"failed"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	if code != http.StatusServiceUnavailable || got.Failed["redis"] == "" || got.Failed["postgres"] != "" {
		t.Errorf("/readyz = %d %s; want 503 naming redis only", code, body)
	}
	if code, _ := get(t, "http://"+w.addr+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d with Redis down, want 200", code)
	}
	rs.Start(t) // let the worker shut down cleanly
}

// TestRunFailsOnUnreachableRedis: start-up errors say what failed.
func TestRunFailsOnUnreachableRedis(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	cfg, err := config.FromEnv(func(k string) string {
		return map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/x", "REDIS_URL": "redis://" + addr}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	err = Run(context.Background(), cfg, config.NewLogger(cfg, io.Discard))
	if err == nil || !strings.Contains(err.Error(), "connect to redis") {
		t.Fatalf("Run = %v, want a redis connection error", err)
	}
}

// TestRunRefusesTheOtherDispatchMode: a worker started with
// FAIR_DISPATCH=false on a Redis whose processes dispatch fairly (the
// first worker recorded it) does not start: it would run admitted tasks
// without reporting them. Its error names the setting and how to switch.
func TestRunRefusesTheOtherDispatchMode(t *testing.T) {
	t.Parallel()
	redisURL := testenv.RedisURL(t)
	startWorker(t, redisURL, nil) // FAIR_DISPATCH defaults to true
	cfg, err := config.FromEnv(func(k string) string {
		return map[string]string{
			"DATABASE_URL": testenv.Postgres(t), "REDIS_URL": redisURL, "HTTP_ADDR": "127.0.0.1:0",
			"DOCUMENTS_DIR": t.TempDir(), "OUTBOX_DIR": t.TempDir(), "FAIR_DISPATCH": "false",
		}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = RunWith(ctx, cfg, config.NewLogger(cfg, io.Discard), Options{
		Ready: func(net.Addr) {
			t.Error("a plain worker became ready beside a fair one")
			cancel()
		},
	})
	if err == nil || !strings.Contains(err.Error(), "FAIR_DISPATCH") || !strings.Contains(err.Error(), "enqueue dispatch-mode") {
		t.Fatalf("RunWith = %v, want the dispatch mode refused", err)
	}
}
