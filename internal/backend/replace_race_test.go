package backend_test

import (
	"context"
	"sync"
	"testing"

	"github.com/invoicing/tenantworker/internal/backend"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/tasks"
)

// TestConcurrentReplaceOfAFinishedTaskMakesOneTask: two enqueues of the
// same id at the same instant (two POSTs for the same invoice), after its
// previous task finished (archived here; completed takes the same path),
// make exactly one new task through Backend.Enqueuer with FAIR_DISPATCH=false:
// exactly one says Existing false and the other returns that task, rather
// than deleting it and enqueueing its own (both "new"), or failing once a
// worker took it. Fair dispatch decides in one script.
func TestConcurrentReplaceOfAFinishedTaskMakesOneTask(t *testing.T) {
	t.Parallel()
	e := env(t)
	e["FAIR_DISPATCH"] = "false"
	cfg, err := config.FromEnv(getenv(e))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	deps, err := backend.Open(ctx, cfg, quietLogger(), backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer deps.Close()
	const rounds = 300
	for inv := int64(1); inv <= rounds; inv++ {
		p := tasks.InvoicePDF{TenantID: "tn_acme", InvoiceID: inv}
		res, err := deps.Enqueuer.Enqueue(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := deps.Inspector.ArchiveTask(res.Info.Queue, res.Info.ID); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var out [2]tasks.EnqueueResult
		var errs [2]error
		for i := range out {
			wg.Go(func() { out[i], errs[i] = deps.Enqueuer.Enqueue(ctx, p) })
		}
		wg.Wait()
		fresh := 0
		for i := range out {
			if errs[i] != nil {
				t.Fatalf("round %d: concurrent enqueue failed: %v", inv, errs[i])
			}
			if !out[i].Existing {
				fresh++
			}
		}
		if fresh != 1 {
			t.Fatalf("round %d: %d of 2 concurrent enqueues say they made a new task, want exactly 1 (%v, %v)", inv, fresh, out[0].Info.State, out[1].Info.State)
		}
	}
}
