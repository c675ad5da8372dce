package worker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/tasks"
)

// TestLastAttemptKeptThoughTheScriptsReplyWasLost: KeepLastAttempt's script
// put a waiting last attempt back into asynq's retry set, but its reply
// was lost (a read timeout after the command went out), or go-redis sent
// the script again after that timeout and the second run found the task
// no longer active. The task is kept all the same (it is in the retry set
// and runs again): the attempt ends with ErrLastAttemptKept, and the
// tenant gets no record of an archived task (which GET /v1/tasks/{id}
// would show as "failed after retries" once the task leaves asynq, and
// which takes a place among the tenant's capped records).
func TestLastAttemptKeptThoughTheScriptsReplyWasLost(t *testing.T) {
	t.Parallel()
	for _, again := range []bool{false, true} {
		t.Run(fmt.Sprintf("sent-again=%v", again), func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			opt, rdb := newRedisClient(t)
			// Every script call of the keep's client loses its reply, or
			// is sent again.
			hook := &testenv.SendTwice{Lose: !again}
			keepRdb := redis.NewClient(&redis.Options{Addr: opt.Addr})
			keepRdb.AddHook(hook)
			t.Cleanup(func() { _ = keepRdb.Close() })
			records := tasks.NewTaskRecords(rdb, tasks.TaskRecordsOptions{})
			const tenantID = "tn_keeplost"
			results := make(chan error, 1)
			keep := worker.KeepLastAttempt(keepRdb)(asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
				return fmt.Errorf("tenant %s is provisioning: %w", tenantID, worker.ErrTenantNotReady)
			}))
			srv := asynq.NewServerFromRedisClient(rdb, worker.ServerConfig(worker.ServerOptions{Concurrency: 1, Logger: discardLogger(),
				ShutdownTimeout: 5 * time.Second, Records: records}))
			if err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
				err := keep.ProcessTask(ctx, task)
				select {
				case results <- err:
				default:
				}
				return err
			})); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Shutdown)
			id := injectRetry(t, rdb, tenantID, 1, lastRetry)
			var err error
			select {
			case err = <-results:
			case <-ctx.Done():
				t.Fatal("the last attempt did not run")
			}
			if hook.Runs() == 0 {
				t.Fatal("the keep script never ran")
			}
			// asynq settles the attempt (and its error handler writes any
			// record) after the handler returned.
			time.Sleep(time.Second)
			if st := state(t, rdb, id); st != "retry" {
				t.Fatalf("the task is %s in asynq; want retry (the script kept it)", st)
			}
			if !errors.Is(err, worker.ErrLastAttemptKept) {
				t.Errorf("the attempt ended with %v; want ErrLastAttemptKept (the task is in the retry set)", err)
			}
			rec, rerr := records.Get(ctx, tenantID, id)
			if rerr == nil {
				t.Errorf("the tenant has a record of the task as archived (%+v) while it waits in asynq's retry set", rec)
			} else if !errors.Is(rerr, tasks.ErrTaskNotFound) {
				t.Fatal(rerr)
			}
		})
	}
}
