package workerapp

import (
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestPlainWorkerRegistersADeletedQueueAgain: without fair dispatch, a
// queue the dashboard deletes while it holds no task (Inspector.DeleteQueue
// without force) leaves asynq's set of queues, which asynq's client writes
// once per process: its next tasks would go through it unlisted by the
// inspector and the dashboard until the enqueuing process restarted. The
// worker puts the queues it serves back into the set, as a fair worker's
// heartbeat does.
func TestPlainWorkerRegistersADeletedQueueAgain(t *testing.T) {
	t.Parallel()
	redisURL := testenv.RedisURL(t)
	startWorker(t, redisURL, map[string]string{"FAIR_DISPATCH": "false", "SCHEDULER_ENABLED": "false"})
	ins := newInspector(t, redisURL)
	opt, err := asynq.ParseRedisURI(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClient(opt)
	t.Cleanup(func() { _ = client.Close() })
	const q = "low"
	// A task of a type no handler serves, held back a day: it never runs.
	info, err := client.Enqueue(asynq.NewTask("test:none", nil), asynq.Queue(q), asynq.ProcessIn(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := ins.DeleteTask(q, info.ID); err != nil { // the queue is empty in asynq now
		t.Fatal(err)
	}
	if err := ins.DeleteQueue(q, false); err != nil { // the dashboard's "delete" of the queue
		t.Fatal(err)
	}
	if _, err := client.Enqueue(asynq.NewTask("test:none", nil), asynq.Queue(q), asynq.ProcessIn(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// A bound for the failure message: the worker registers its queues
	// within modeKeepInterval.
	testenv.WaitFor(t, 4*modeKeepInterval, "the worker to register the deleted queue again", func() bool {
		qs, err := ins.Queues()
		if err != nil {
			t.Fatal(err)
		}
		return slices.Contains(qs, q)
	})
}
