package tasks

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestFollowUpOfRunningRender: a render asked for while the invoice's
// render runs gets a follow-up task (FollowUpID), new the first time and
// the same one while it waits, and the follow-up runs after the running
// one; with fair dispatch and without.
func TestFollowUpOfRunningRender(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, ctx context.Context, enq *Enqueuer, tenantID string, started chan string, release chan struct{}) {
		p := InvoicePDF{TenantID: tenantID, InvoiceID: 7}
		first, err := enq.Enqueue(ctx, p)
		if err != nil || first.Existing {
			t.Fatalf("first request: %+v, %v", first, err)
		}
		if id := receive(t, started); id != first.Info.ID {
			t.Fatalf("running %s, want %s", id, first.Info.ID)
		}
		again, err := enq.Enqueue(ctx, p)
		if err != nil || again.Existing || again.Info.ID != FollowUpID(first.Info.ID) {
			t.Fatalf("request while it runs: %+v, %v; want a new follow-up %s", again, err, FollowUpID(first.Info.ID))
		}
		dup, err := enq.Enqueue(ctx, p)
		if err != nil || !dup.Existing || dup.Info.ID != again.Info.ID {
			t.Fatalf("request again: %+v, %v; want the waiting follow-up", dup, err)
		}
		many, err := enq.EnqueueMany(ctx, tenantID, []Payload{p, InvoicePDF{TenantID: tenantID, InvoiceID: 8}})
		if err != nil || many[0].Info.ID != again.Info.ID || !many[0].Existing || many[1].Info.ID != (InvoicePDF{TenantID: tenantID, InvoiceID: 8}).Spec().TaskID {
			t.Fatalf("bulk request: %+v, %v", many, err)
		}
		close(release)
		ran := map[string]bool{receive(t, started): true, receive(t, started): true}
		if !ran[again.Info.ID] || !ran[many[1].Info.ID] {
			t.Fatalf("after the running render %v ran, want the follow-up and invoice 8's render", ran)
		}
	})
}

// TestBulkNamingATaskTwice: a bulk request that names an invoice twice
// gets one task for both copies, the first answer new and the second the
// same task as existing, also when the invoice's render runs (both copies
// answer its follow-up); with fair dispatch and without.
func TestBulkNamingATaskTwice(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, ctx context.Context, enq *Enqueuer, tenantID string, started chan string, release chan struct{}) {
		defer close(release)
		running := InvoicePDF{TenantID: tenantID, InvoiceID: 7}
		first, err := enq.Enqueue(ctx, running)
		if err != nil {
			t.Fatal(err)
		}
		if id := receive(t, started); id != first.Info.ID {
			t.Fatalf("running %s, want %s", id, first.Info.ID)
		}
		other := InvoicePDF{TenantID: tenantID, InvoiceID: 9}
		got, err := enq.EnqueueMany(ctx, tenantID, []Payload{running, other, running, other})
		if err != nil {
			t.Fatal(err)
		}
		want := []struct {
			id       string
			existing bool
		}{
			{FollowUpID(first.Info.ID), false}, {other.Spec().TaskID, false},
			{FollowUpID(first.Info.ID), true}, {other.Spec().TaskID, true},
		}
		for i, w := range want {
			if got[i].Info.ID != w.id || got[i].Existing != w.existing || got[i].Info.State != asynq.TaskStatePending {
				t.Errorf("copy %d: %s %v existing=%v; want %s pending existing=%v", i, got[i].Info.ID, got[i].Info.State, got[i].Existing, w.id, w.existing)
			}
		}
	})
}

// eachMode runs fn as a parallel subtest per dispatch mode ("plain",
// "fair"), on a Redis of its own with an asynq server of concurrency 1
// that reports each task it starts on started and holds it until release
// is closed (startBlockingServer).
func eachMode(t *testing.T, fn func(t *testing.T, ctx context.Context, enq *Enqueuer, tenantID string, started chan string, release chan struct{})) {
	for _, mode := range []string{"plain", "fair"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			opt := newRedis(t)
			enq, tenantID := enqueuerFor(t, opt, mode)
			started, release := startBlockingServer(t, opt)
			fn(t, testContext(t), enq, tenantID, started, release)
		})
	}
}

// enqueuerFor returns an Enqueuer on opt's Redis, with fair admission
// (mode "fair") or without ("plain"), and a tenant's id to enqueue for.
func enqueuerFor(t *testing.T, opt asynq.RedisClientOpt, mode string) (*Enqueuer, string) {
	t.Helper()
	if mode == "plain" {
		enq, _ := newTestEnqueuer(t, opt)
		tn, err := tenantctx.New("plain-acme", "Plain", "free")
		if err != nil {
			t.Fatal(err)
		}
		return enq, tn.ID
	}
	rdb := redis.NewClient(&redis.Options{Addr: opt.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	enq, _, _, tenants := fairSetupOn(t, rdb, 2)
	return enq, tenants[0].ID
}

// startBlockingServer starts an asynq server of concurrency 1 whose
// handler sends each task's id to started, then holds it until release is
// closed (or the task's context ends).
func startBlockingServer(t *testing.T, opt asynq.RedisClientOpt) (started chan string, release chan struct{}) {
	t.Helper()
	started, release = make(chan string, 4), make(chan struct{})
	startServer(t, opt, asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		started <- id
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}), 1)
	return started, release
}

// receive returns the next id from ch, failing the test after a minute.
func receive(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case id := <-ch:
		return id
	case <-time.After(time.Minute): // a bound for the failure message, not a measurement
		t.Fatal("no task started within a minute")
		return ""
	}
}

// TestBulkAtTheCapAcceptsNothingFollowUpsIncluded: with fair dispatch a
// bulk request whose follow-ups (of renders running now) would take the
// tenant past its waiting cap is refused whole: neither the follow-ups nor
// the other new tasks are accepted. Within the cap, the follow-up and the
// new tasks go in together.
func TestBulkAtTheCapAcceptsNothingFollowUpsIncluded(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	opt, rdb := newRedisClient(t)
	enq, inspector, catalog, tenants := fairSetupOn(t, rdb, 1)
	tn := tenants[0]
	if _, err := catalog.SetLimits(ctx, tn.ID, "", tenantctx.Limits{MaxWaiting: 2}); err != nil {
		t.Fatal(err)
	}
	started, release := startBlockingServer(t, opt)
	pdf := func(id int64) Payload { return InvoicePDF{TenantID: tn.ID, InvoiceID: id} }
	first, err := enq.Enqueue(ctx, pdf(1))
	if err != nil {
		t.Fatal(err)
	}
	if id := receive(t, started); id != first.Info.ID {
		t.Fatalf("running %s, want %s", id, first.Info.ID)
	}

	// Invoice 1's follow-up and invoices 2 and 3: three new tasks, past
	// the cap of 2.
	if _, err := enq.EnqueueMany(ctx, tn.ID, []Payload{pdf(1), pdf(2), pdf(3)}); !errors.Is(err, fair.ErrBacklogFull) {
		t.Fatalf("bulk past the cap: %v, want ErrBacklogFull", err)
	}
	d := enq.admission.Dispatcher
	for _, id := range []string{FollowUpID(first.Info.ID), pdf(2).Spec().TaskID, pdf(3).Spec().TaskID} {
		if w, ok, err := d.Waiting(ctx, id, QueueDefault); err != nil || ok {
			t.Errorf("the refused bulk left %s waiting: %+v, %v", id, w, err)
		}
		if info, err := inspector.GetTaskInfo(QueueDefault, id); err == nil {
			t.Errorf("the refused bulk left %s in asynq: %+v", id, info)
		}
	}
	// Within the cap: the follow-up and invoice 2, together.
	got, err := enq.EnqueueMany(ctx, tn.ID, []Payload{pdf(1), pdf(2)})
	if err != nil || got[0].Existing || got[0].Info.ID != FollowUpID(first.Info.ID) || got[1].Existing || got[1].Info.ID != pdf(2).Spec().TaskID {
		t.Fatalf("bulk within the cap: %+v, %v; want the follow-up and invoice 2, both new", got, err)
	}
	close(release)
}
