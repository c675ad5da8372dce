package fair_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/invoicing/tenantworker/fair"
)

// lastAttempt gives the asynq message of active task id a retry count of
// 3 (task() allows 3 retries): the attempt a worker runs is its last, and
// asynq archives it if the worker hands it back with an error. It returns
// the message.
func lastAttempt(t *testing.T, b bundle, id string) string {
	t.Helper()
	ctx := context.Background()
	key := "asynq:{" + q + "}:t:" + id
	msg, err := b.rdb.HGet(ctx, key, "msg").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	msg = protowire.AppendVarint(protowire.AppendTag(msg, 6, protowire.VarintType), 3) // retried: 3
	b.rdb.HSet(ctx, key, "msg", msg)
	return string(msg)
}

// keptAsAdmitted reports whether got, asynq's message of a task admitted
// again, is the kept message msg (retry count 3, lastAttempt) with only a
// run header appended by the admission.
func keptAsAdmitted(t *testing.T, msg, got string) bool {
	t.Helper()
	if !strings.HasPrefix(got, msg) || len(got) == len(msg) {
		return false
	}
	var retried uint64
	for rest := []byte(got); len(rest) > 0; {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			t.Fatalf("admitted message: %v", protowire.ParseError(n))
		}
		rest = rest[n:]
		if num == 6 && typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(rest)
			if m < 0 {
				t.Fatalf("admitted message: %v", protowire.ParseError(m))
			}
			retried = v
		}
		m := protowire.ConsumeFieldValue(num, typ, rest)
		if m < 0 {
			t.Fatalf("admitted message: %v", protowire.ParseError(m))
		}
		rest = rest[m:]
	}
	return retried == 3
}

// TestParkedTaskKeepsItsMessage: Park keeps the message of the task asynq
// holds as active (its retry count included). The worker then hands the
// task back with asynq.RevokeTask, which asynq neither retries nor
// archives, also on its last attempt: asynq deletes its record, and the
// release puts the kept message at the front of the backlog with the
// task's enqueue time, from where it is admitted as it was.
func TestParkedTaskKeepsItsMessage(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_kept"
	enqueued := b.clock.Now()
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, 1)
	id := dequeue(t, b)
	msg := lastAttempt(t, b, id)
	enqueue(t, b, "tn_other", fair.Policy{Weight: 1}, 0, 1) // keeps asynq's list full (MinPending 1)
	b.clock.Advance(10 * time.Second)
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 1, 1) // waits behind the other tenant's task
	holdAndPark(t, b, tn, id, fair.Suspended)
	done(t, b, id) // asynq.RevokeTask: asynq deletes the task
	if s := stats(t, b, tn); s.Parked != 1 || s.Admitted != 0 || s.Waiting != 1 {
		t.Fatalf("stats while held: %+v; want 1 parked, 1 waiting", s)
	}
	if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, tn); s.Parked != 1 {
		t.Fatalf("a heartbeat released a held tenant's parked task: %+v", s)
	}
	afterHandBack(b)
	if n, err := b.d.Release(ctx, tn, fair.Suspended, q); err != nil || n != 0 {
		t.Fatalf("Release = %d, %v", n, err)
	}
	w, ok, err := b.d.Waiting(ctx, id, q)
	if err != nil || !ok {
		t.Fatalf("Waiting(%s) = %v, %v; want the parked task back in the backlog", id, ok, err)
	}
	if !w.Enqueued.Equal(enqueued) {
		t.Fatalf("released task enqueued %v, want %v", w.Enqueued, enqueued)
	}
	// First in the backlog: admitted first once the other tenant's task ran.
	other := dequeue(t, b)
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: other, TenantID: "tn_other", Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	done(t, b, other)
	if got := dequeue(t, b); got != id {
		t.Fatalf("dequeued %q, want the released %s first", got, id)
	}
	got, err := b.rdb.HGet(ctx, "asynq:{"+q+"}:t:"+id, "msg").Result()
	if err != nil || !keptAsAdmitted(t, msg, got) {
		t.Fatalf("admitted with another message (%v): its retry count must be kept", err)
	}
	if s := stats(t, b, tn); s.Parked != 0 || s.Admitted != 1 || s.Waiting != 1 {
		t.Fatalf("stats after the release: %+v", s)
	}
}

// TestParkedTaskWaitsForAsynqToLetGo: a release while asynq still holds a
// parked task as active (its worker has not handed it back) leaves it
// parked: asynq's script that ends the attempt deletes the task's record,
// and would delete a run of it admitted meanwhile. If the worker is
// killed before handing it back, asynq's recoverer archives its last
// attempt: the next heartbeat takes it from asynq's archive and puts it
// back into the backlog; nothing is lost, and it runs once.
func TestParkedTaskWaitsForAsynqToLetGo(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	A := "asynq:{" + q + "}:"
	const tn = "tn_letgo"
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, 1)
	id := dequeue(t, b)
	msg := lastAttempt(t, b, id)
	holdAndPark(t, b, tn, id, fair.Paused)
	if n, err := b.d.Release(ctx, tn, fair.Paused, q); err != nil || n != 1 {
		t.Fatalf("Release with the parked task still active = %d, %v; want 1 not released", n, err)
	}
	if s := stats(t, b, tn); s.Parked != 1 || s.Waiting != 0 || s.Admitted != 0 {
		t.Fatalf("stats with the parked task still active: %+v; want it parked", s)
	}
	if st, _ := b.rdb.HGet(ctx, A+"t:"+id, "state").Result(); st != "active" {
		t.Fatalf("asynq's task state %q, want active", st)
	}

	// kill -9 of the worker; asynq's recoverer archives the last attempt.
	b.rdb.LRem(ctx, A+"active", 0, id)
	b.rdb.HSet(ctx, A+"t:"+id, "state", "archived")
	b.rdb.ZAdd(ctx, A+"archived", redis.Z{Score: float64(b.clock.Now().Unix()), Member: id})
	if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n, _ := b.rdb.ZCard(ctx, A+"archived").Result(); n != 0 {
		t.Fatal("the parked task is still in asynq's archive after the heartbeat")
	}
	if got := dequeue(t, b); got != id {
		t.Fatalf("dequeued %q, want the parked %s", got, id)
	}
	if got, _ := b.rdb.HGet(ctx, A+"t:"+id, "msg").Result(); !keptAsAdmitted(t, msg, got) {
		t.Fatal("admitted with another message: its retry count must be kept")
	}
	if s := stats(t, b, tn); s.Parked != 0 || s.Admitted != 1 || s.Waiting != 0 {
		t.Fatalf("stats after the heartbeat: %+v", s)
	}
}

// TestDrainCountsParkedTaskKeptHere: a drain discards a parked task whose
// message the dispatcher keeps (asynq let it go) and counts it as parked.
func TestDrainCountsParkedTaskKeptHere(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_drainkept"
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, 1)
	id := dequeue(t, b)
	holdAndPark(t, b, tn, id, fair.Suspended)
	done(t, b, id) // asynq.RevokeTask: asynq deletes the task
	n, err := b.d.Drain(ctx, tn, q)
	if err != nil || n.Parked != 1 || n.Total() != 1 {
		t.Fatalf("Drain = %+v, %v; want the parked task discarded and counted", n, err)
	}
	if _, err := b.d.Release(ctx, tn, fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, tn); s.Parked != 0 || s.Waiting != 0 || s.Admitted != 0 {
		t.Fatalf("after the drain and the release: %+v; want nothing left", s)
	}
}

// keptThenArchived enqueues a task of tenant tn, dequeues it on its last
// attempt and parks it with its message for a pause, then does what asynq's
// recoverer does when the worker was killed before the hand-back: archives
// the attempt. It returns the task's id.
func keptThenArchived(t *testing.T, b bundle, tn string) string {
	t.Helper()
	ctx := context.Background()
	A := "asynq:{" + q + "}:"
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, 1)
	id := dequeue(t, b)
	lastAttempt(t, b, id)
	holdAndPark(t, b, tn, id, fair.Paused)
	b.rdb.LRem(ctx, A+"active", 0, id)
	b.rdb.HSet(ctx, A+"t:"+id, "state", "archived")
	b.rdb.ZAdd(ctx, A+"archived", redis.Z{Score: float64(b.clock.Now().Unix()), Member: id})
	return id
}

// TestDrainDiscardsAKeptTaskAsynqArchived: a task kept parked whose
// attempt asynq archived (its worker killed before the hand-back) is
// waiting, not failed: release and enqueue treat it so. A drain discards
// and counts it like any parked task, and takes asynq's archived copy
// away, so the tenant does not see it as a failed task.
func TestDrainDiscardsAKeptTaskAsynqArchived(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	const tn = "tn_drain_arch"
	id := keptThenArchived(t, b, tn)
	if s := stats(t, b, tn); s.Parked != 1 {
		t.Fatalf("before the drain: %+v; want the kept task parked", s)
	}
	n, err := b.d.Drain(context.Background(), tn, q)
	if err != nil {
		t.Fatal(err)
	}
	if n.Parked != 1 || n.Total() != 1 {
		t.Errorf("Drain = %+v; want the parked task discarded and counted", n)
	}
	if st := inAsynq(t, b, id); st != "" {
		t.Errorf("after the drain asynq still has the discarded task, as %q", st)
	}
	if s := stats(t, b, tn); s.Parked != 0 || s.Waiting != 0 || s.Admitted != 0 {
		t.Errorf("stats after the drain: %+v; want nothing", s)
	}
}

// TestEnqueueFindsAKeptTaskAsynqArchived: a worker killed between parking
// a task on its last attempt and handing it back leaves it to asynq's
// recoverer, which archives it; the dispatcher still keeps it and the next
// heartbeat brings it back. An enqueue of its id meanwhile, replacing or
// not, finds it waiting (pending, nothing added) instead of answering
// "archived" or adding a second copy, and it runs once.
func TestEnqueueFindsAKeptTaskAsynqArchived(t *testing.T) {
	t.Parallel()
	for _, replace := range []bool{false, true} {
		t.Run(fmt.Sprintf("replace=%v", replace), func(t *testing.T) {
			t.Parallel()
			b := setup(t, 1)
			ctx := context.Background()
			tn := fmt.Sprintf("tn_arch_%v", replace)
			id := keptThenArchived(t, b, tn)

			again := task(tn, 0)
			again.ReplaceFinished = replace
			res, err := b.d.Enqueue(ctx, tn, fair.Policy{Weight: 1}, []fair.Task{again})
			if err != nil {
				t.Fatal(err)
			}
			if r := res[0]; r.State != "pending" || !r.Existing {
				t.Fatalf("enqueue of the kept task's id = %+v; want it found waiting (pending, existing)", r)
			}
			if _, err := b.d.Release(ctx, tn, fair.Paused, q); err != nil {
				t.Fatal(err)
			}
			if got := dequeue(t, b); got != id {
				t.Fatalf("dequeued %q, want the kept %s", got, id)
			}
			if s := stats(t, b, tn); s.Waiting != 0 || s.Parked != 0 || s.Admitted != 1 {
				t.Fatalf("stats after the release: %+v; want the one task admitted, nothing else", s)
			}
		})
	}
}
