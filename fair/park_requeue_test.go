package fair_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/invoicing/tenantworker/fair"
)

// requeue does what asynq's shutdown does with a task whose handler it
// stops waiting for (its Requeue): the task goes from the active list back
// to the pending list, message unchanged. The handler's hand-back
// (asynq.RevokeTask), returned afterwards, never reaches asynq.
func requeue(t *testing.T, b bundle, id string) {
	t.Helper()
	ctx := context.Background()
	A := "asynq:{" + q + "}:"
	b.rdb.LRem(ctx, A+"active", 0, id)
	b.rdb.RPush(ctx, A+"pending", id)
	b.rdb.HSet(ctx, A+"t:"+id, "state", "pending")
}

// recovered does what asynq does with an active task whose worker lost
// its lease (the hand-back did not reach asynq in time): its recoverer
// retries it, counting one retry, and its forwarder makes it pending.
func recovered(t *testing.T, b bundle, id string) {
	t.Helper()
	ctx := context.Background()
	A := "asynq:{" + q + "}:"
	msg, err := b.rdb.HGet(ctx, A+"t:"+id, "msg").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	msg = protowire.AppendVarint(protowire.AppendTag(msg, 6, protowire.VarintType), 1) // retried: 1
	b.rdb.LRem(ctx, A+"active", 0, id)
	b.rdb.HSet(ctx, A+"t:"+id, "msg", msg, "state", "pending")
	b.rdb.LPush(ctx, A+"pending", id)
}

// TestParkedTaskRequeuedNamesNoRun: asynq's copy of a parked task's
// message names no run, so that a worker that gets the task back from a
// shutdown's requeue (not from the release) asks the gate instead of
// running it as an admitted first attempt: the gate parks it again while
// its tenant is held. It runs once, after the release, and nothing brings
// it back after that run.
func TestParkedTaskRequeuedNamesNoRun(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_requeued"
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, 1)
	id := dequeue(t, b)
	if run, _ := runHeaderOf(t, b, id); run == "" {
		t.Fatal("admitted without a run header")
	}
	holdAndPark(t, b, tn, id, fair.Paused)
	requeue(t, b, id)
	if got := dequeue(t, b); got != id {
		t.Fatalf("dequeued %q, want the requeued %s", got, id)
	}
	if run, _ := runHeaderOf(t, b, id); run != "" {
		t.Fatalf("the parked task's message names run %q: a worker runs it as an admitted first attempt, past the gate", run)
	}
	parked, _, err := b.d.GateRun(ctx, q, id, tn, "invoice:pdf")
	if err != nil || !parked {
		t.Fatalf("GateRun of the requeued task of a paused tenant = %v, %v; want it parked again", parked, err)
	}
	done(t, b, id) // asynq.RevokeTask
	if s := stats(t, b, tn); s.Parked != 1 {
		t.Fatalf("stats after the second park: %+v; want the task parked", s)
	}

	afterHandBack(b)
	if _, err := b.d.Release(ctx, tn, fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	if got := dequeue(t, b); got != id {
		t.Fatalf("dequeued %q after the release, want %s", got, id)
	}
	run, _ := runHeaderOf(t, b, id)
	if run == "" {
		t.Fatal("admitted again without a run header")
	}
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: id, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond, Run: run}}); err != nil {
		t.Fatal(err)
	}
	done(t, b, id)
	if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := dequeue(t, b); got != "" {
		t.Fatalf("dequeued %q after its run: the task ran twice", got)
	}
	if s := stats(t, b, tn); s.Parked != 0 || s.Waiting != 0 || s.Admitted != 0 {
		t.Fatalf("stats after the run: %+v; want nothing left", s)
	}
}

// TestDrainedTaskAsynqBringsBackNeverRuns: a drain discards and counts a
// parked task whose worker is still handing it back. If the hand-back
// does not reach asynq (the worker's lease ran out: asynq's recoverer
// retries the task; or its shutdown requeued it), asynq brings the task
// back to a worker: the gate, or the park of a suspended tenant's task,
// answers ErrDrained, and the task never runs.
func TestDrainedTaskAsynqBringsBackNeverRuns(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		back func(t *testing.T, b bundle, id string)
		// resumed: the tenant runs again when a worker takes the task
		// back, which asks the gate; else it is still suspended, and the
		// worker asks to park it.
		resumed bool
	}{
		{name: "lease lost", back: recovered, resumed: true},
		{name: "requeued", back: requeue, resumed: true},
		{name: "requeued while suspended", back: requeue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 1)
			ctx := context.Background()
			const tn = "tn_drained_back"
			enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, 1)
			id := dequeue(t, b)
			holdAndPark(t, b, tn, id, fair.Suspended)
			n, err := b.d.Drain(ctx, tn, q)
			if err != nil || n.Parked != 1 || n.Total() != 1 {
				t.Fatalf("Drain = %+v, %v; want the task being handed back discarded and counted", n, err)
			}
			tc.back(t, b, id)
			if tc.resumed {
				if _, err := b.d.Release(ctx, tn, fair.Suspended, q); err != nil {
					t.Fatal(err)
				}
			}
			if got := dequeue(t, b); got != id {
				t.Fatalf("dequeued %q, want the task asynq brought back", got)
			}
			if tc.resumed {
				parked, _, err := b.d.GateRun(ctx, q, id, tn, "invoice:pdf")
				if !errors.Is(err, fair.ErrDrained) {
					t.Fatalf("GateRun of the drained task = %v, %v; want ErrDrained: it must not run", parked, err)
				}
			} else {
				parked, err := b.d.Park(ctx, q, id, tn, "invoice:pdf")
				if !errors.Is(err, fair.ErrDrained) {
					t.Fatalf("Park of the drained task = %v, %v; want ErrDrained: parked, it runs after the release", parked, err)
				}
			}
			done(t, b, id) // asynq.RevokeTask
			if _, err := b.d.Release(ctx, tn, fair.Suspended, q); err != nil {
				t.Fatal(err)
			}
			if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
				t.Fatal(err)
			}
			if got := dequeue(t, b); got != "" {
				t.Fatalf("dequeued %q: a drained task came back", got)
			}
			if s := stats(t, b, tn); s.Parked != 0 || s.Waiting != 0 || s.Admitted != 0 {
				t.Fatalf("stats: %+v; want nothing left", s)
			}
		})
	}
}

// TestDrainMarkEndsWithTheDiscardedAttempt: the mark a drain leaves for a
// task it discarded while its worker was handing it back concerns that
// attempt only, and ends with its expiry. A heartbeat takes the attempt
// out of asynq when asynq brought it back (pending, or in its retry set)
// and ends the mark; an
// enqueue of the id while the attempt waits in asynq's retry set adds the
// task anew instead of answering with the discarded attempt; and a new
// task of the id, once asynq let the attempt go, runs, its retries too.
func TestDrainMarkEndsWithTheDiscardedAttempt(t *testing.T) {
	t.Parallel()
	A := "asynq:{" + q + "}:"
	// drained parks tenant's only task and drains the tenant while the
	// worker is handing the task back; it returns the task id.
	drained := func(t *testing.T, b bundle, tn string) string {
		t.Helper()
		enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, 1)
		id := dequeue(t, b)
		holdAndPark(t, b, tn, id, fair.Suspended)
		if n, err := b.d.Drain(context.Background(), tn, q); err != nil || n.Parked != 1 {
			t.Fatalf("Drain = %+v, %v", n, err)
		}
		if _, err := b.d.Release(context.Background(), tn, fair.Suspended, q); err != nil {
			t.Fatal(err)
		}
		return id
	}

	t.Run("heartbeat", func(t *testing.T) {
		t.Parallel()
		b := setup(t, 1)
		id := drained(t, b, "tn_mark_beat")
		recovered(t, b, id)
		if err := b.d.Heartbeat(context.Background(), q, "w1", 1, time.Minute); err != nil {
			t.Fatal(err)
		}
		if st := inAsynq(t, b, id); st != "" {
			t.Fatalf("the discarded attempt is %s in asynq after the heartbeat, want gone", st)
		}
		if got := dequeue(t, b); got != "" {
			t.Fatalf("dequeued %q: the discarded attempt", got)
		}
	})

	t.Run("after hours without a worker", func(t *testing.T) {
		t.Parallel()
		b := setup(t, 1)
		id := drained(t, b, "tn_mark_outage")
		// Every worker stopped with the attempt active; asynq's recoverer,
		// which runs on workers only, takes it back when one starts.
		b.clock.Advance(3 * time.Hour)
		recovered(t, b, id)
		if err := b.d.Heartbeat(context.Background(), q, "w1", 1, time.Minute); err != nil {
			t.Fatal(err)
		}
		if st := inAsynq(t, b, id); st != "" {
			t.Fatalf("the discarded attempt is %s in asynq after the heartbeat, want gone", st)
		}
	})

	t.Run("expiry", func(t *testing.T) {
		t.Parallel()
		b := setup(t, 1)
		ctx := context.Background()
		drained(t, b, "tn_mark_expiry") // its worker never hands it back
		if n, _ := b.rdb.ZCard(ctx, "fair:{"+q+"}:drained").Result(); n != 1 {
			t.Fatalf("%d drain marks, want 1", n)
		}
		b.clock.Advance(25 * time.Hour) // past the mark's day
		if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
			t.Fatal(err)
		}
		if n, _ := b.rdb.ZCard(ctx, "fair:{"+q+"}:drained").Result(); n != 0 {
			t.Fatalf("%d drain marks left after their expiry, want 0", n)
		}
	})

	t.Run("enqueue over the attempt", func(t *testing.T) {
		t.Parallel()
		b := setup(t, 1)
		ctx := context.Background()
		const tn = "tn_mark_enq"
		id := drained(t, b, tn)
		// The recoverer put the attempt into asynq's retry set.
		b.rdb.LRem(ctx, A+"active", 0, id)
		b.rdb.HSet(ctx, A+"t:"+id, "state", "retry")
		b.rdb.ZAdd(ctx, A+"retry", redis.Z{Score: float64(b.clock.Now().Add(time.Minute).Unix()), Member: id})
		res := enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, 1)
		if res[0].Existing {
			t.Fatalf("enqueue of the discarded task's id = %+v; want it added anew, not the discarded attempt", res[0])
		}
		if n, _ := b.rdb.ZCard(ctx, A+"retry").Result(); n != 0 {
			t.Fatal("the discarded attempt is still in asynq's retry set")
		}
		if got := dequeue(t, b); got != id {
			t.Fatalf("dequeued %q, want the new task %s", got, id)
		}
	})

	t.Run("new task of the id", func(t *testing.T) {
		t.Parallel()
		b := setup(t, 1)
		ctx := context.Background()
		const tn = "tn_mark_new"
		id := drained(t, b, tn)
		done(t, b, id) // the hand-back reached asynq
		res := enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, 1)
		if res[0].Existing {
			t.Fatalf("enqueue after the drain = %+v; want a new task", res[0])
		}
		if got := dequeue(t, b); got != id {
			t.Fatalf("dequeued %q, want the new task %s", got, id)
		}
		// Its first attempt fails: asynq retries it.
		if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: id, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
			t.Fatal(err)
		}
		recovered(t, b, id)
		if got := dequeue(t, b); got != id {
			t.Fatalf("dequeued %q, want the retry %s", got, id)
		}
		if parked, _, err := b.d.GateRun(ctx, q, id, tn, "invoice:pdf"); err != nil || parked {
			t.Fatalf("GateRun of the new task's retry = %v, %v; want it to run: the drain's mark was of the attempt it discarded", parked, err)
		}
	})
}
