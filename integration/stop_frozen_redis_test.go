package integration

import (
	"syscall"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestWorkerStopsWithRedisFrozen: a worker told to stop (SIGTERM) while
// its Redis answers nothing (the server stopped with SIGSTOP, as on a
// paused VM: connections open, no answer) exits with status 1 and a log
// line saying why once its stop has taken SHUTDOWN_TIMEOUT plus 15 s,
// instead of waiting out every network timeout of asynq's shutdown steps
// (21 s for an idle worker with SHUTDOWN_TIMEOUT=2s before, 34 s for a busy one). Its leased tasks go back to their
// queues when the leases lapse, as after kill -9.
func TestWorkerStopsWithRedisFrozen(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{noEnqueue: true, shutdownTimeout: 2 * time.Second, redis: testenv.StartRedis(t, testenv.RedisOptions{})})
	w := s.workers[0]
	resume := testenv.StopRedis(t, s.rdb)
	defer resume()
	exitErr, took, exited := w.signal(syscall.SIGTERM, 60*time.Second)
	if !exited {
		t.Fatalf("worker still running %v after SIGTERM with Redis frozen", took)
	}
	t.Logf("worker exited %v after SIGTERM with Redis frozen: %v", took.Round(100*time.Millisecond), exitErr)
	if !w.logContains("worker stop took too long") || exitErr == nil {
		t.Errorf("worker exited after %v with %v, log:\n%s\nwant status 1 and the log line saying its stop took too long", took, exitErr, w.logTail(20))
	}
	if took > 30*time.Second {
		t.Errorf("worker took %v to exit, want about SHUTDOWN_TIMEOUT (2s) + 15s", took)
	}
}
