package fair_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
)

// TestReplaceUnreportedKeepsTheCapRandomized: replacing enqueues of tasks
// asynq finished whose reports come late, out of order, twice or never, with
// lease checks in between, never take the tenant past its running cap, never
// answer a request with a run that finished before it, and leave nothing
// admitted once every report is in. Each seed is in every failure message.
func TestReplaceUnreportedKeepsTheCapRandomized(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Eight seeds of 400 steps meet a finished, unreported run about 40
	// times (20 seeds, about 95 times, took 14 s under -race).
	const seeds = 8
	unreported := 0
	for seed := uint64(1); seed <= seeds; seed++ {
		b := setup(t, 50)
		const tn = "tn_rpu"
		p := fair.Policy{Weight: 1, MaxRunning: 2}
		rng := rand.New(rand.NewPCG(seed, 7))
		type att struct{ id, run string }
		var active []att
		var late []att
		activeOf := func(id string) bool {
			for _, a := range active {
				if a.id == id {
					return true
				}
			}
			return false
		}
		check := func(step int, what string) {
			t.Helper()
			s := stats(t, b, tn)
			n, _ := b.rdb.LLen(ctx, "asynq:{"+q+"}:active").Result()
			pn, _ := b.rdb.LLen(ctx, "asynq:{"+q+"}:pending").Result()
			if s.Admitted > 2 || n > 2 || n+pn > int64(s.Admitted) {
				t.Fatalf("seed %d step %d (%s): %+v, %d active and %d pending in asynq; cap 2", seed, step, what, s, n, pn)
			}
		}
		finish := func(i int, report bool) {
			a := active[i]
			active = append(active[:i], active[i+1:]...)
			b.rdb.LRem(ctx, "asynq:{"+q+"}:active", 0, a.id)
			b.rdb.HSet(ctx, "asynq:{"+q+"}:t:"+a.id, "state", "completed")
			b.rdb.ZAdd(ctx, "asynq:{"+q+"}:completed", redis.Z{Score: float64(time.Now().Add(time.Hour).Unix()), Member: a.id})
			if report {
				late = append(late, a)
			}
		}
		deliver := func(i int) {
			a := late[i]
			if rng.IntN(4) != 0 {
				late = append(late[:i], late[i+1:]...)
			}
			rep := fair.Report{Queue: q, TaskID: a.id, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond, Run: a.run}
			if err := b.d.Complete(ctx, q, []fair.Report{rep}); err != nil {
				t.Fatal(err)
			}
		}
		held := false
		for step := 0; step < 400; step++ {
			switch op := rng.IntN(13); {
			case op == 10:
				var err error
				if held {
					_, err = b.d.Release(ctx, tn, fair.Suspended, q)
				} else {
					_, err = b.d.Hold(ctx, tn, fair.Suspended, q)
				}
				if err != nil {
					t.Fatal(err)
				}
				held = !held
				check(step, "hold/release")
			case op == 11:
				afterHandBack(b)
				if err := b.d.Heartbeat(ctx, q, "w1", 4, time.Minute); err != nil {
					t.Fatal(err)
				}
				check(step, "heartbeat")
			case op == 12:
				// A task asynq's recoverer archived (its worker killed,
				// last attempt): no report ever.
				if len(active) > 0 {
					i := rng.IntN(len(active))
					a := active[i]
					active = append(active[:i], active[i+1:]...)
					b.rdb.LRem(ctx, "asynq:{"+q+"}:active", 0, a.id)
					b.rdb.HSet(ctx, "asynq:{"+q+"}:t:"+a.id, "state", "archived")
					b.rdb.ZAdd(ctx, "asynq:{"+q+"}:archived", redis.Z{Score: float64(time.Now().Unix()), Member: a.id})
				}
				check(step, "archive")
			case op < 3:
				n := rng.IntN(4)
				tk := task(tn, n)
				tk.ReplaceFinished = true
				if st, _ := b.rdb.HGet(ctx, "asynq:{"+q+"}:t:"+tk.Message.ID, "state").Result(); (st == "completed" || st == "archived") && recordedRun(t, b, tk.Message.ID) != "" {
					unreported++
				}
				res, err := b.d.Enqueue(ctx, tn, p, []fair.Task{tk})
				if err != nil {
					t.Fatal(err)
				}
				r := res[0]
				if r.Existing && (r.State == "completed" || r.State == "archived" || (r.State == "active" && !activeOf(tk.Message.ID))) {
					t.Fatalf("seed %d step %d: request for %s answered %+v, no attempt of it running", seed, step, tk.Message.ID, r)
				}
				check(step, "enqueue")
			case op < 5:
				if id := dequeue(t, b); id != "" {
					run, _ := runHeaderOf(t, b, id)
					if run == "" {
						t.Fatalf("seed %d step %d: %s admitted without a run", seed, step, id)
					}
					if held {
						ok, err := b.d.ParkRun(ctx, q, id, tn, "invoice:pdf", run)
						if err != nil {
							t.Fatal(err)
						}
						if ok {
							if rng.IntN(3) == 0 {
								// Killed before the hand-back: asynq's
								// recoverer archives the last attempt.
								b.rdb.LRem(ctx, "asynq:{"+q+"}:active", 0, id)
								b.rdb.HSet(ctx, "asynq:{"+q+"}:t:"+id, "state", "archived")
								b.rdb.ZAdd(ctx, "asynq:{"+q+"}:archived", redis.Z{Score: float64(time.Now().Unix()), Member: id})
							} else {
								b.rdb.LRem(ctx, "asynq:{"+q+"}:active", 0, id)
								b.rdb.Del(ctx, "asynq:{"+q+"}:t:"+id)
							}
							break
						}
					}
					active = append(active, att{id, run})
				}
				check(step, "dequeue")
			case op < 7:
				if len(active) > 0 {
					finish(rng.IntN(len(active)), rng.IntN(8) != 0)
				}
				check(step, "finish")
			case op < 9:
				if len(late) > 0 {
					deliver(rng.IntN(len(late)))
				}
				check(step, "report")
			default:
				b.clock.Advance(fair.DefaultLease + time.Second)
				if _, err := b.d.Pump(ctx, q); err != nil {
					t.Fatal(err)
				}
				check(step, "pump")
			}
		}
		// Wind down: everything runs and reports.
		if held {
			if _, err := b.d.Release(ctx, tn, fair.Suspended, q); err != nil {
				t.Fatal(err)
			}
		}
		afterHandBack(b)
		if err := b.d.Heartbeat(ctx, q, "w1", 4, time.Minute); err != nil {
			t.Fatal(err)
		}
		for range 100 {
			for len(active) > 0 {
				finish(0, true)
			}
			for len(late) > 0 {
				a := late[0]
				late = late[1:]
				rep := fair.Report{Queue: q, TaskID: a.id, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond, Run: a.run}
				if err := b.d.Complete(ctx, q, []fair.Report{rep}); err != nil {
					t.Fatal(err)
				}
			}
			id := dequeue(t, b)
			if id == "" {
				b.clock.Advance(fair.DefaultLease + time.Second)
				if _, err := b.d.Pump(ctx, q); err != nil {
					t.Fatal(err)
				}
				afterHandBack(b)
				if err := b.d.Heartbeat(ctx, q, "w1", 4, time.Minute); err != nil {
					t.Fatal(err)
				}
				if id = dequeue(t, b); id == "" {
					break
				}
			}
			run, _ := runHeaderOf(t, b, id)
			active = append(active, att{id, run})
			check(-1, "wind down")
		}
		if s := stats(t, b, tn); s.Admitted != 0 || s.Waiting != 0 || s.Parked != 0 {
			t.Fatalf("seed %d: at the end %+v; want nothing admitted or waiting", seed, s)
		}
	}
	if unreported == 0 {
		t.Fatal("no enqueue met a finished, unreported run")
	}
	t.Logf("%d enqueues replaced a finished, unreported run", unreported)
}

// TestReplaceUnreportedRefusedChangesNothing: a replacing enqueue refused
// at a cap leaves the finished, unreported run as it was; the cut-off
// attempt's refund applies once; a held tenant's replacement waits.
func TestReplaceUnreportedRefusedChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, 50)
	const tn = "tn_rpf"
	p := fair.Policy{Weight: 1, MaxRunning: 1, MaxWaiting: 1}
	enqueue(t, b, tn, p, 0, 1)
	id := dequeue(t, b)
	run, _ := runHeaderOf(t, b, id)
	enqueue(t, b, tn, p, 1, 1) // fills the backlog (cap 1 running)
	b.rdb.LRem(ctx, "asynq:{"+q+"}:active", 0, id)
	b.rdb.HSet(ctx, "asynq:{"+q+"}:t:"+id, "state", "completed")
	b.rdb.ZAdd(ctx, "asynq:{"+q+"}:completed", redis.Z{Score: float64(time.Now().Add(time.Hour).Unix()), Member: id})
	tk := task(tn, 0)
	tk.ReplaceFinished = true
	if _, err := b.d.Enqueue(ctx, tn, p, []fair.Task{tk}); err == nil {
		t.Fatal("want the backlog full")
	}
	if got := recordedRun(t, b, id); got != run {
		t.Fatalf("after a refused replace the run is %q, want %q", got, run)
	}
	if st, _ := b.rdb.HGet(ctx, "asynq:{"+q+"}:t:"+id, "state").Result(); st != "completed" {
		t.Fatalf("asynq state %q", st)
	}
	// Held: the replacement waits, the run ends.
	if _, err := b.d.Hold(ctx, tn, fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	p.MaxWaiting = 5
	res, err := b.d.Enqueue(ctx, tn, p, []fair.Task{tk, tk})
	if err != nil || res[0].Existing || !res[1].Existing {
		t.Fatalf("replace of a held tenant: %+v, %v", res, err)
	}
	if s := stats(t, b, tn); s.Admitted != 0 || s.Waiting != 2 && s.Waiting != 1 {
		t.Fatalf("after the replace while held: %+v", s)
	}
	vt := tenantVT(t, b, tn)
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: id, TenantID: tn, Type: "invoice:pdf", Cost: 5 * time.Millisecond, Run: run}}); err != nil {
		t.Fatal(err)
	}
	if v := tenantVT(t, b, tn); v != vt {
		t.Fatalf("late report of the estimate's own cost moved vt %v -> %v", vt, v)
	}
	if _, err := b.d.Release(ctx, tn, fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, tn); s.Admitted != 1 || s.Waiting != 1 {
		t.Fatalf("after the release: %+v", s)
	}
}
