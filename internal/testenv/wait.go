package testenv

import (
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

// WaitFor polls cond every 20 ms until it holds, and fails the test after
// timeout naming what it waited for.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitTaskState waits up to a minute until the asynq task id in queue
// reaches state, and returns its info. The bound is for the failure
// message, not a measurement: getting there takes asynq's polling, a
// handler's real PostgreSQL and Redis work and, for a retry, its delayed
// task check, which on a loaded machine under -race can take many seconds.
func WaitTaskState(t testing.TB, inspector *asynq.Inspector, queue, id string, state asynq.TaskState) *asynq.TaskInfo {
	t.Helper()
	var info *asynq.TaskInfo
	WaitFor(t, time.Minute, fmt.Sprintf("task %s to be %s", id, state), func() bool {
		var err error
		info, err = inspector.GetTaskInfo(queue, id)
		return err == nil && info.State == state
	})
	return info
}
