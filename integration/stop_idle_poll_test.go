package integration

import (
	"syscall"
	"testing"
	"time"
)

// TestIdleWorkerWithSlowPollStopsCleanly: a healthy, idle worker without
// fair dispatch whose TASK_CHECK_INTERVAL is long (allowed up to 1m)
// stops with status 0. asynq's idle processor sleeps TASK_CHECK_INTERVAL/2
// to 1.5 times it between looks, and its shutdown waits for that sleep
// (TestWorkerStopsWithRedisFrozen's watchdog must not take it for a
// frozen Redis and cut the stop short with status 1).
func TestIdleWorkerWithSlowPollStopsCleanly(t *testing.T) {
	t.Parallel()
	// The sleep the stop waits out (18-54 s, less the second or two
	// between the processor's look and the SIGTERM) is longer than the
	// limit would be without it (SHUTDOWN_TIMEOUT plus 15 s): the shortest
	// SHUTDOWN_TIMEOUT (nothing runs) lets TASK_CHECK_INTERVAL be that
	// much shorter, and the test as much faster (it waits the sleep out).
	s := newStack(t, stackOptions{noEnqueue: true, shutdownTimeout: time.Millisecond,
		env: map[string]string{"FAIR_DISPATCH": "false", "TASK_CHECK_INTERVAL": "36s"}})
	w := s.workers[0]
	time.Sleep(time.Second) // the processor's first look found nothing: it sleeps 18-54 s
	exitErr, took, exited := w.signal(syscall.SIGTERM, 90*time.Second)
	if !exited {
		t.Fatalf("worker still running %v after SIGTERM", took)
	}
	t.Logf("idle worker stopped %v after SIGTERM", took.Round(100*time.Millisecond))
	if exitErr != nil || w.logContains("worker stop took too long") {
		t.Errorf("healthy idle worker exited after %v with %v, log:\n%s\nwant status 0, no 'stop took too long'", took.Round(100*time.Millisecond), exitErr, w.logTail(10))
	}
}
