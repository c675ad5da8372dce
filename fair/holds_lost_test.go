package fair_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
)

// The tests here lose Redis's data (FLUSHALL, as a Redis restarted
// without persistence) under a dispatcher whose holds are recorded
// outside Redis (fair.Config.Holds, the catalog in the binaries): a held
// tenant's work must stay held, and nothing else is to be changed.

// holdsBundle is a bundle whose dispatcher reads its holds from *record,
// counting the reads.
type holdsBundle struct {
	bundle
	record *[]fair.Holding
	reads  *atomic.Int64
}

func setupHolds(t *testing.T, minPending int) holdsBundle {
	t.Helper()
	record := &[]fair.Holding{}
	reads := &atomic.Int64{}
	b := setupConfig(t, fair.Config{MinPending: minPending, PendingPerSlot: 1, PendingTime: time.Microsecond,
		Holds: func(context.Context) ([]fair.Holding, error) {
			reads.Add(1)
			return slices.Clone(*record), nil
		}})
	return holdsBundle{bundle: b, record: record, reads: reads}
}

// beat runs one worker heartbeat in q.
func (b holdsBundle) beat(t *testing.T) {
	t.Helper()
	if err := b.d.Heartbeat(context.Background(), q, "w1", 4, time.Minute); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
}

// held records tenant as held for reason (as the catalog does before the
// hold is made) and holds it.
func (b holdsBundle) held(t *testing.T, tenant string, reason fair.Reason) {
	t.Helper()
	*b.record = append(*b.record, fair.Holding{TenantID: tenant, Reason: reason, Queues: []string{q}})
	if _, err := b.d.Hold(context.Background(), tenant, reason, q); err != nil {
		t.Fatal(err)
	}
}

func (b holdsBundle) flush(t *testing.T) {
	t.Helper()
	if err := b.rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatalf("FLUSHALL: %v", err)
	}
}

// TestHoldsLostWithRedisDataArePutBack: a paused and a suspended tenant,
// Redis flushed, their tasks enqueued again: nothing of them is admitted,
// neither by the first enqueue after the loss (which puts the holds back)
// nor by those after it or a heartbeat, while another tenant's work runs;
// releasing the pause runs the paused tenant's task.
func TestHoldsLostWithRedisDataArePutBack(t *testing.T) {
	t.Parallel()
	b := setupHolds(t, 4)
	b.beat(t)
	b.held(t, "tn_paused", fair.Paused)
	b.held(t, "tn_suspended", fair.Suspended)
	for _, tn := range []string{"tn_paused", "tn_suspended"} {
		enqueue(t, b.bundle, tn, fair.Policy{Weight: 1}, 0, 2)
	}
	if n := pendingLen(t, b.bundle); n != 0 {
		t.Fatalf("held tenants' tasks admitted before the loss: %d pending", n)
	}
	b.flush(t)
	for _, tn := range []string{"tn_paused", "tn_suspended", "tn_free"} {
		enqueue(t, b.bundle, tn, fair.Policy{Weight: 1}, 10, 1)
	}
	b.beat(t)
	if ran := work(t, b.bundle, 10, equalCost); !slices.Equal(ran, []string{"tn_free"}) {
		t.Fatalf("after the heartbeat ran %v, want [tn_free] only", ran)
	}
	for _, tn := range []string{"tn_paused", "tn_suspended"} {
		if s := stats(t, b.bundle, tn); s.Waiting != 1 || s.Admitted != 0 || s.Paused != (tn == "tn_paused") || s.Suspended != (tn == "tn_suspended") {
			t.Fatalf("%s after the holds were put back: %+v", tn, s)
		}
	}
	if _, err := b.d.Release(context.Background(), "tn_paused", fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	if ran := work(t, b.bundle, 10, equalCost); !slices.Equal(ran, []string{"tn_paused"}) {
		t.Fatalf("after the release ran %v, want [tn_paused]", ran)
	}
}

// TestHoldsAreReadOnlyWhenLost: the record is read only when the
// queue's holds are lost, by the first enqueue or heartbeat that finds
// them lost; one restore serves every process after it.
func TestHoldsAreReadOnlyWhenLost(t *testing.T) {
	t.Parallel()
	b := setupHolds(t, 1)
	// A fresh Redis: the first enqueue puts its holds back (none) and
	// admits.
	enqueue(t, b.bundle, "tn_a", fair.Policy{Weight: 1}, 0, 3)
	if n := pendingLen(t, b.bundle); n != 1 {
		t.Fatalf("pending after the first enqueue = %d, want 1", n)
	}
	for i := range 3 {
		enqueue(t, b.bundle, "tn_a", fair.Policy{Weight: 1}, 10*(i+1), 3)
		work(t, b.bundle, 1, equalCost)
		b.beat(t)
	}
	if n := b.reads.Load(); n != 1 {
		t.Fatalf("record read %d times without a loss, want 1 (the first enqueue)", n)
	}
	b.flush(t)
	b.beat(t)
	if err := b.d.Heartbeat(context.Background(), q, "w2", 4, time.Minute); err != nil {
		t.Fatal(err)
	}
	enqueue(t, b.bundle, "tn_a", fair.Policy{Weight: 1}, 100, 3)
	if n := b.reads.Load(); n != 2 {
		t.Fatalf("record read %d times after one loss, two workers' beats and an enqueue, want 2", n)
	}
}

// TestReleaseWhileHoldsLostStands: a pause released while the queue's
// holds were lost is not put back by a record read before the release
// (the worker read the catalog, then the operator resumed).
func TestReleaseWhileHoldsLostStands(t *testing.T) {
	t.Parallel()
	b := setupHolds(t, 4)
	b.beat(t)
	b.held(t, "tn_resumed", fair.Paused)
	b.flush(t)
	// The record still says paused (read before the resume cleared it).
	if _, err := b.d.Release(context.Background(), "tn_resumed", fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	enqueue(t, b.bundle, "tn_resumed", fair.Policy{Weight: 1}, 0, 1)
	b.beat(t)
	if ran := work(t, b.bundle, 10, equalCost); !slices.Equal(ran, []string{"tn_resumed"}) {
		t.Fatalf("ran %v, want [tn_resumed]: the resume made during the loss stands", ran)
	}
	// A later loss puts back what the record says then.
	*b.record = nil
	b.flush(t)
	enqueue(t, b.bundle, "tn_resumed", fair.Policy{Weight: 1}, 1, 1)
	b.beat(t)
	if ran := work(t, b.bundle, 10, equalCost); !slices.Equal(ran, []string{"tn_resumed"}) {
		t.Fatalf("after the second loss ran %v, want [tn_resumed]", ran)
	}
}

// TestLostHoldMovesAdmittedTasksBack: only the holds and their marker are
// lost (keys evicted or deleted), so the paused tenant's tasks were
// admitted meanwhile by a process that does not check the marker; the
// heartbeat that puts its hold back moves those asynq has not started
// back into its backlog, as a hold does.
func TestLostHoldMovesAdmittedTasksBack(t *testing.T) {
	t.Parallel()
	b := setupHolds(t, 4)
	b.beat(t)
	b.held(t, "tn_paused", fair.Paused)
	enqueue(t, b.bundle, "tn_paused", fair.Policy{Weight: 1}, 0, 3)
	ctx := context.Background()
	if err := b.rdb.Del(ctx, "fair:{"+q+"}:hold", "fair:{"+q+"}:holds").Err(); err != nil {
		t.Fatal(err)
	}
	// What a dispatcher without the record admits (its heartbeat puts the
	// tenant back into the ready set, out of which its hold had taken it).
	plain := fair.New(b.rdb, fair.Config{MinPending: 4, PendingPerSlot: 1, PendingTime: time.Microsecond, Now: b.clock.Now, HealEvery: -1})
	if err := plain.Heartbeat(ctx, q, "w0", 4, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := pendingLen(t, b.bundle); n != 3 {
		t.Fatalf("pending after the loss = %d, want 3", n)
	}
	healed, err := fair.HeartbeatHealed(b.d, ctx, q, "w1", 4, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if healed.Held != 1 || healed.HeldBack != 3 {
		t.Fatalf("heartbeat put back %+v, want 1 tenant held and 3 tasks moved back", healed)
	}
	if s := stats(t, b.bundle, "tn_paused"); s.Waiting != 3 || s.Admitted != 0 || !s.Paused {
		t.Fatalf("after the heartbeat: %+v", s)
	}
}

// TestSwitchBackToFairTakesHoldsFromTheRecord: holds made before a switch
// to plain dispatch are not kept past a switch back to fair. While plain
// processes ran, a suspended tenant was resumed and another suspended,
// with no hold made or released: after the switch back the first one's
// work runs and the second one's is held, as the record says then.
func TestSwitchBackToFairTakesHoldsFromTheRecord(t *testing.T) {
	t.Parallel()
	b := setupHolds(t, 4)
	ctx := context.Background()
	if err := fair.ClaimMode(ctx, b.rdb, fair.ModeFair); err != nil {
		t.Fatal(err)
	}
	// A first task run: the queue's holds are marker and all (not lost).
	enqueue(t, b.bundle, "tn_free", fair.Policy{Weight: 1}, 100, 1)
	if ran := work(t, b.bundle, 1, equalCost); len(ran) != 1 {
		t.Fatalf("first task: ran %v", ran)
	}
	b.held(t, "tn_resumed", fair.Suspended)
	if _, err := b.d.SwitchMode(ctx, fair.ModePlain, q); err != nil {
		t.Fatalf("SwitchMode(plain) with only a hold left: %v", err)
	}
	// Under plain dispatch: tn_resumed resumed, tn_suspended suspended.
	*b.record = []fair.Holding{{TenantID: "tn_suspended", Reason: fair.Suspended, Queues: []string{q}}}
	if from, err := b.d.SwitchMode(ctx, fair.ModeFair, q); err != nil || from != fair.ModePlain {
		t.Fatalf("SwitchMode(fair) = %q, %v; want from plain", from, err)
	}
	for i, tn := range []string{"tn_resumed", "tn_suspended", "tn_free"} {
		enqueue(t, b.bundle, tn, fair.Policy{Weight: 1}, 10*i, 1)
	}
	b.beat(t)
	ran := work(t, b.bundle, 10, equalCost)
	slices.Sort(ran)
	if !slices.Equal(ran, []string{"tn_free", "tn_resumed"}) {
		t.Fatalf("after the switch back to fair ran %v, want [tn_free tn_resumed] (tn_suspended held)", ran)
	}
	if s := stats(t, b.bundle, "tn_suspended"); s.Waiting != 1 || !s.Suspended {
		t.Fatalf("tn_suspended after the switch back: %+v, want its task waiting, held", s)
	}
}
