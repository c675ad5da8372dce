package tasks

import (
	"errors"
	"strconv"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestAnotherTenantsTaskCostsWhatAMissingOneDoes: a look-up of another
// tenant's task id (waiting in its backlog, or in asynq) sends Redis the
// same commands as a look-up of an id no task has, with fair dispatch and
// without. A look-up that stopped at the first task it found of another
// tenant answered in a fraction of the round trips of one that looked
// everywhere, so its answer's time told a tenant which of another
// tenant's task ids (its invoice ids, its reminder days) exist.
func TestAnotherTenantsTaskCostsWhatAMissingOneDoes(t *testing.T) {
	t.Parallel()
	for _, withFair := range []bool{false, true} {
		t.Run("fair="+strconv.FormatBool(withFair), func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			srv := testenv.StartRedis(t, testenv.RedisOptions{})
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
			t.Cleanup(func() { _ = rdb.Close() })
			sent := &testenv.CountCommands{}
			rdb.AddHook(sent)
			var enq *Enqueuer
			asker, other := "tn_acme", "tn_globex"
			if withFair {
				// One task admitted to asynq while no worker is alive: the
				// other tenant's first task is in asynq, its second waits
				// in its backlog.
				e, _, _, tn := fairSetupOn(t, rdb, 1)
				enq, asker, other = e, tn[0].ID, tn[1].ID
			} else {
				enq = NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), discardLogger())
			}
			var theirs []string
			for id := int64(1); id <= 2; id++ {
				res, err := enq.Enqueue(ctx, InvoicePDF{TenantID: other, InvoiceID: id})
				if err != nil {
					t.Fatal(err)
				}
				theirs = append(theirs, res.Info.ID)
			}
			missing := InvoicePDF{TenantID: other, InvoiceID: 3}.Spec().TaskID
			cost := func(id string) int64 {
				t.Helper()
				before := sent.Sent()
				if _, err := enq.TenantTask(ctx, asker, id); !errors.Is(err, ErrTaskNotFound) {
					t.Fatalf("TenantTask(%s) of another tenant: %v, want ErrTaskNotFound", id, err)
				}
				return sent.Sent() - before
			}
			cost(missing) // the client's connection made
			want := cost(missing)
			for _, id := range theirs {
				if got := cost(id); got != want {
					t.Errorf("look-up of another tenant's task %s sent %d commands, of a missing one %d: the answer's time tells the task exists", id, got, want)
				}
			}
		})
	}
}
