package fair_test

import (
	"context"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
)

// TestRetryLetRunByTheGateGoesBackInFront: a retry the gate let run, met
// again by the gate while its tenant is held (a shutdown put it back into
// asynq's pending list, or its lease was lost), is parked as a retry
// parked at the gate is: asynq keeps no enqueue time of it, so it counts
// as enqueued with the oldest task waiting, and goes back in front of the
// tasks waiting when it was parked, where it was taken from. It used to
// go back with the time the gate let it run, behind the tasks the tenant
// had enqueued before that (held from admission by other tenants' work).
func TestRetryLetRunByTheGateGoesBackInFront(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "acme"
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, 1)
	retried := dequeue(t, b)
	// Its attempt fails: the report ends its run, and asynq retries it.
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: retried, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	toRetry(t, b, retried)
	// Another tenant's task fills asynq's pending list: the tenant's next
	// task waits in its backlog.
	enqueue(t, b, "zed", fair.Policy{Weight: 1}, 0, 1)
	b.clock.Advance(time.Second)
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 1, 1)
	// The retry comes due and a worker takes it: the gate lets it run.
	b.clock.Advance(time.Second)
	A := "asynq:{" + q + "}:"
	b.rdb.ZRem(ctx, A+"retry", retried)
	b.rdb.LPush(ctx, A+"active", retried)
	b.rdb.HSet(ctx, A+"t:"+retried, "state", "active")
	if parked, _, err := b.d.GateRun(ctx, q, retried, tn, "invoice:pdf"); err != nil || parked {
		t.Fatalf("GateRun = %v, %v; want it to run", parked, err)
	}
	// The tenant is suspended, and the attempt comes back to a worker
	// (a shutdown put it back): the gate parks it.
	if _, err := b.d.Hold(ctx, tn, fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	if parked, _, err := b.d.GateRun(ctx, q, retried, tn, "invoice:pdf"); err != nil || !parked {
		t.Fatalf("GateRun while held = %v, %v; want it parked", parked, err)
	}
	done(t, b, retried) // the worker's hand-back
	afterHandBack(b)
	if _, err := b.d.Release(ctx, tn, fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	// The other tenant's task runs; then the tenant's, in order.
	if id := dequeue(t, b); id != task("zed", 0).Message.ID {
		t.Fatalf("dequeued %q first; want the other tenant's task", id)
	}
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: task("zed", 0).Message.ID, TenantID: "zed", Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	done(t, b, task("zed", 0).Message.ID)
	sameOrder(t, tn, runAll(t, b, tn), 0, 1)
}
