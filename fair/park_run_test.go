package fair_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
)

// asynqDone is asynq's script that ends an attempt its handler let go
// (doneCmd of asynq v0.26's rdb.Done, without its counters): what a
// worker's hand-back (asynq.RevokeTask) runs, and runs again when the
// call's reply is lost (go-redis sends a script that timed out again, for
// as long as the attempt's lease lasts).
//
//	KEYS[1] asynq's active list, KEYS[2] its lease set, KEYS[3] the task's hash; ARGV[1] the task id.
var asynqDone = redis.NewScript(`
if redis.call("LREM", KEYS[1], 0, ARGV[1]) == 0 then
  return redis.error_reply("NOT FOUND")
end
if redis.call("ZREM", KEYS[2], ARGV[1]) == 0 then
  return redis.error_reply("NOT FOUND")
end
if redis.call("DEL", KEYS[3]) == 0 then
  return redis.error_reply("NOT FOUND")
end
return redis.status_reply("OK")
`)

// handBackOf runs asynq's hand-back of task id (asynqDone).
func handBackOf(b bundle, id string) error {
	A := "asynq:{" + q + "}:"
	return asynqDone.Run(context.Background(), b.rdb, []string{A + "active", A + "lease", A + "t:" + id}, id).Err()
}

// take does what an asynq worker's dequeue does, lease included: it takes
// the oldest pending task of q, marks it active and leases it. It returns
// "" when none is pending.
func take(t *testing.T, b bundle) string {
	t.Helper()
	id := dequeue(t, b)
	if id != "" {
		lease := float64(b.clock.Now().Add(30 * time.Second).Unix())
		b.rdb.ZAdd(context.Background(), "asynq:{"+q+"}:lease", redis.Z{Score: lease, Member: id})
	}
	return id
}

// asynqState is asynq's state of task id, or "gone".
func asynqState(t *testing.T, b bundle, id string) string {
	t.Helper()
	st, err := b.rdb.HGet(context.Background(), "asynq:{"+q+"}:t:"+id, "state").Result()
	if errors.Is(err, redis.Nil) {
		return "gone"
	}
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestLateParkDoesNotEndANewRun: a park names the run its worker's attempt
// runs under (ParkRun). A park of an attempt whose lease ran out, arriving
// after the task id ran again under a later run (a retry the gate let
// run, or the id enqueued and admitted again), must leave that run
// admitted and the task unparked: before run tokens it ended the new
// run's admission (its slot freed while it runs) and parked the new run's
// message, which the release would have run a second time. The new run's
// own park still parks it.
func TestLateParkDoesNotEndANewRun(t *testing.T) {
	t.Parallel()
	A := "asynq:{" + q + "}:"
	p := fair.Policy{Weight: 1, MaxRunning: 1}
	for _, tc := range []struct {
		name  string
		again func(t *testing.T, b bundle, tn, id string) string
	}{{
		name: "retried at the gate",
		again: func(t *testing.T, b bundle, tn, id string) string {
			// The first attempt's worker stalls past its lease; asynq's
			// recoverer retries the task, another worker takes the retry.
			ctx := context.Background()
			b.rdb.LRem(ctx, A+"active", 0, id)
			b.rdb.HSet(ctx, A+"t:"+id, "state", "active")
			b.rdb.LPush(ctx, A+"active", id)
			parked, run, err := b.d.GateRun(ctx, q, id, tn, "invoice:pdf")
			if err != nil || parked || run == "" {
				t.Fatalf("GateRun of the retry = %v, %q, %v; want it to run under a run token", parked, run, err)
			}
			return run
		},
	}, {
		name: "enqueued again after the lease",
		again: func(t *testing.T, b bundle, tn, id string) string {
			done(t, b, id) // asynq is done with the first attempt; no report came
			b.clock.Advance(fair.DefaultLease + time.Second)
			if _, err := b.d.Pump(context.Background(), q); err != nil {
				t.Fatal(err)
			}
			if res := enqueue(t, b, tn, p, 0, 1); res[0].Existing {
				t.Fatalf("enqueue of the id again: %+v; want a new run", res[0])
			}
			if got := dequeue(t, b); got != id {
				t.Fatalf("dequeued %q, want the new run of %s", got, id)
			}
			run, _ := runHeaderOf(t, b, id)
			return run
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 1)
			ctx := context.Background()
			tn := "tn_latepark_" + strings.ReplaceAll(tc.name, " ", "_")
			enqueue(t, b, tn, p, 0, 1)
			id := dequeue(t, b)
			first, _ := runHeaderOf(t, b, id)
			second := tc.again(t, b, tn, id)
			if second == "" || second == first || recordedRun(t, b, id) != second {
				t.Fatalf("second run %q (first %q), recorded %q; want a run of its own", second, first, recordedRun(t, b, id))
			}
			if _, err := b.d.Hold(ctx, tn, fair.Suspended, q); err != nil {
				t.Fatal(err)
			}

			// The first attempt's park, late.
			parked, err := b.d.ParkRun(ctx, q, id, tn, "invoice:pdf", first)
			if err != nil || parked {
				t.Fatalf("ParkRun of the first run = %v, %v; want false: a later run of the id is admitted", parked, err)
			}
			if s := stats(t, b, tn); s.Admitted != 1 || s.Parked != 0 || recordedRun(t, b, id) != second {
				t.Fatalf("after the first run's late park: %+v, recorded run %q; want the second run %q admitted, nothing parked", s, recordedRun(t, b, id), second)
			}

			// The second run's own worker parks it.
			parked, err = b.d.ParkRun(ctx, q, id, tn, "invoice:pdf", second)
			if err != nil || !parked {
				t.Fatalf("ParkRun of the second run = %v, %v; want it parked", parked, err)
			}
			if s := stats(t, b, tn); s.Admitted != 0 || s.Parked != 1 {
				t.Fatalf("after the second run's park: %+v; want it parked, nothing admitted", s)
			}
		})
	}
}

// TestRetriedHandBackLeavesANewRunAlone: after a park, the worker hands the
// task back to asynq (asynq.RevokeTask: asynq's script deletes it). When
// that call's reply is lost, the script is sent again, for as long as the
// attempt's lease lasts, and applied after the task was released, admitted
// and taken by a worker again it deleted that run from asynq's lists
// (whose report and retry then find nothing). So a parked task asynq let
// go comes back only once its hand-back can no longer arrive: the release
// leaves it parked until then, the repeated hand-back finds nothing to
// delete, and a heartbeat after that time brings the task back, under a
// new run that asynq keeps.
func TestRetriedHandBackLeavesANewRunAlone(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_handback_again"
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, 1)
	id := take(t, b)
	run, _ := runHeaderOf(t, b, id)
	if _, err := b.d.Hold(ctx, tn, fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	if parked, err := b.d.ParkRun(ctx, q, id, tn, "invoice:pdf", run); err != nil || !parked {
		t.Fatalf("ParkRun = %v, %v", parked, err)
	}
	// The hand-back is applied; its reply is lost.
	if err := handBackOf(b, id); err != nil {
		t.Fatalf("the hand-back: %v", err)
	}
	if _, err := b.d.Release(ctx, tn, fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	// A worker takes what asynq has pending meanwhile; then the hand-back,
	// sent again, is applied.
	taken := take(t, b)
	again := handBackOf(b, id)
	if taken != "" {
		if st := asynqState(t, b, id); st != "active" {
			t.Fatalf("the hand-back sent again deleted the run taken after the release (asynq: %s, hand-back %v): the task was released while its hand-back could still arrive", st, again)
		}
		t.Fatalf("took %q right after the release: the parked task came back while its hand-back could still arrive", taken)
	}
	if again == nil || !strings.Contains(again.Error(), "NOT FOUND") {
		t.Fatalf("the hand-back sent again: %v; want it to find nothing (NOT FOUND)", again)
	}
	if s := stats(t, b, tn); s.Parked != 1 || s.Waiting != 0 || s.Admitted != 0 {
		t.Fatalf("after the release: %+v; want the task still parked", s)
	}

	// Once the hand-back can no longer arrive, a heartbeat brings it back.
	afterHandBack(b)
	if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := take(t, b); got != id {
		t.Fatalf("took %q after the hand-back time, want the parked %s", got, id)
	}
	next, _ := runHeaderOf(t, b, id)
	if next == "" || next == run || recordedRun(t, b, id) != next {
		t.Fatalf("run header %q (parked under %q, recorded %q); want a new run", next, run, recordedRun(t, b, id))
	}
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: id, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond, Run: next}}); err != nil {
		t.Fatal(err)
	}
	if err := handBackOf(b, id); err != nil {
		t.Fatalf("the new run's own end in asynq: %v", err)
	}
	if s := stats(t, b, tn); s.Parked != 0 || s.Waiting != 0 || s.Admitted != 0 {
		t.Fatalf("at the end: %+v; want nothing left", s)
	}
}
