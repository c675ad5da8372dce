package fair_test

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
)

// TestRandomOperationsKeepTheInvariants drives the dispatcher with random
// operations of three tenants and a simulated worker (enqueues with
// repeats, admissions, completions, failures, holds and releases, drains)
// and checks after each step that no task is lost or duplicated, the caps
// hold, and a held tenant gets nothing admitted. FAIR_MODEL_SEEDS sets how
// many seeds run (modelSeeds).
func TestRandomOperationsKeepTheInvariants(t *testing.T) {
	for seed := range modelSeeds(t) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runModel(t, int64(seed)) })
	}
}

// defaultModelSeeds is how many seeds the random model tests run when
// FAIR_MODEL_SEEDS is unset: 10 runs of 300-400 random steps each reach
// every operation and its interleavings many times over, in a third of
// the -race time of the 30 they ran before; set FAIR_MODEL_SEEDS=200 to
// hunt for a rare interleaving.
const defaultModelSeeds = 10

// modelSeeds returns how many seeds (0, 1, ...) a random model test runs:
// FAIR_MODEL_SEEDS, or defaultModelSeeds. Each seed is its subtest's name
// and is in every failure message, so a failure reruns with -run .../seed.
func modelSeeds(t *testing.T) int {
	t.Helper()
	s := os.Getenv("FAIR_MODEL_SEEDS")
	if s == "" {
		return defaultModelSeeds
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("FAIR_MODEL_SEEDS=%q: want a positive number of seeds", s)
	}
	return n
}

func runModel(t *testing.T, seed int64) {
	b := setup(t, 3)
	ctx := context.Background()
	r := rand.New(rand.NewSource(seed))
	tenants := []string{"tn_a", "tn_b", "tn_c"}
	pol := map[string]fair.Policy{
		"tn_a": {Weight: 1, MaxRunning: 2, MaxWaiting: 0},
		"tn_b": {Weight: 2, MaxRunning: 1, MaxWaiting: 0},
		"tn_c": {Weight: 1, MaxRunning: 0, MaxWaiting: 0},
	}
	// state: queued (in dispatcher or asynq, not started), active, done, discarded
	state := map[string]string{}
	owner := map[string]string{}
	held := map[string]bool{}
	// bound is how many admitted tasks each tenant may have: its cap, or
	// more just after a policy change lowered the cap below what was
	// already admitted, never more than that until it falls to the cap.
	bound := map[string]int{}
	for tn, p := range pol {
		bound[tn] = p.MaxRunning
	}
	var active []string
	next := map[string]int{}
	var log []string
	fail := func(format string, a ...any) {
		t.Helper()
		t.Fatalf("seed %d after %v: %s", seed, log[max(0, len(log)-15):], fmt.Sprintf(format, a...))
	}
	for step := 0; step < 300; step++ {
		tn := tenants[r.Intn(len(tenants))]
		switch op := r.Intn(100); {
		case op < 25: // enqueue new or repeated tasks
			var tasks []fair.Task
			k := 1 + r.Intn(4)
			for range k {
				var n int
				if next[tn] > 0 && r.Intn(3) == 0 {
					n = r.Intn(next[tn])
				} else {
					n = next[tn]
					next[tn]++
				}
				tasks = append(tasks, task(tn, n))
			}
			res, err := b.d.Enqueue(ctx, tn, pol[tn], tasks)
			if err != nil {
				fail("enqueue: %v", err)
			}
			for i, x := range res {
				id := tasks[i].Message.ID
				owner[id] = tn
				st := state[id]
				log = append(log, fmt.Sprintf("enq %s=%v(%s)", id, x.Existing, st))
				switch st {
				case "", "done", "discarded":
					if x.Existing && !(st == "" && seenEarlier(tasks[:i], id)) {
						fail("enqueue of %s (model %q) answered existing %+v", id, st, x)
					}
					state[id] = "queued"
				default:
					if !x.Existing {
						fail("enqueue of %s (model %q) answered new", id, st)
					}
				}
			}
		case op < 50: // a worker dequeues
			id := dequeue(t, b)
			if id == "" {
				continue
			}
			tn := tenantOf(id)
			if state[id] != "queued" {
				fail("dequeued %s in model state %q", id, state[id])
			}
			if held[tn] {
				ok, err := b.d.Park(ctx, q, id, tn, "invoice:pdf")
				if err != nil || !ok {
					fail("park %s: %v %v", id, ok, err)
				}
				done(t, b, id) // RevokeTask
				log = append(log, "park "+id)
				continue
			}
			state[id] = "active"
			active = append(active, id)
			log = append(log, "deq "+id)
		case op < 70: // a worker completes
			if len(active) == 0 {
				continue
			}
			i := r.Intn(len(active))
			id := active[i]
			active = append(active[:i], active[i+1:]...)
			if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: id, TenantID: tenantOf(id), Type: "invoice:pdf", Cost: time.Duration(1+r.Intn(10)) * time.Millisecond}}); err != nil {
				fail("complete: %v", err)
			}
			done(t, b, id)
			state[id] = "done"
			log = append(log, "done "+id)
		case op < 78:
			if _, err := b.d.Hold(ctx, tn, fair.Paused, q); err != nil {
				fail("hold: %v", err)
			}
			held[tn] = true
			log = append(log, "hold "+tn)
		case op < 86:
			if _, err := b.d.Release(context.Background(), tn, fair.Paused, q); err != nil {
				fail("release: %v", err)
			}
			held[tn] = false
			log = append(log, "release "+tn)
		case op < 91:
			n, err := b.d.Drain(ctx, tn, q)
			if err != nil {
				fail("drain: %v", err)
			}
			want := 0
			for id, st := range state {
				if st == "queued" && owner[id] == tn {
					want++
					state[id] = "discarded"
				}
			}
			log = append(log, fmt.Sprintf("drain %s %+v", tn, n))
			if n.Total() != want {
				fail("drain of %s discarded %+v, model says %d", tn, n, want)
			}
		case op < 96:
			b.clock.Advance(time.Duration(r.Intn(50)) * time.Second)
			if err := b.d.Heartbeat(ctx, q, "w1", 2, time.Hour); err != nil {
				fail("heartbeat: %v", err)
			}
			log = append(log, "beat")
		default:
			if os.Getenv("MODEL_NOPOLICY") != "" {
				continue
			}
			np := fair.Policy{Weight: 1 + r.Intn(3), MaxRunning: r.Intn(3)}
			pol[tn] = np
			bound[tn] = max(np.MaxRunning, admitted(b, tn))
			if np.MaxRunning == 0 {
				bound[tn] = 0
			}
			if err := b.d.SetPolicy(ctx, tn, np, q); err != nil {
				fail("setpolicy: %v", err)
			}
			log = append(log, fmt.Sprintf("policy %s %+v", tn, np))
		}
		checkModel(t, b, seed, state, owner, held, pol, bound, log, fail)
	}
}

// admitted is how many tasks of tn are pending or active in asynq.
func admitted(b bundle, tn string) int {
	ctx := context.Background()
	pend, _ := b.rdb.LRange(ctx, "asynq:{"+q+"}:pending", 0, -1).Result()
	act, _ := b.rdb.LRange(ctx, "asynq:{"+q+"}:active", 0, -1).Result()
	n := 0
	for _, id := range append(pend, act...) {
		if tenantOf(id) == tn {
			n++
		}
	}
	return n
}

func seenEarlier(tasks []fair.Task, id string) bool {
	for _, x := range tasks {
		if x.Message.ID == id {
			return true
		}
	}
	return false
}

func checkModel(t *testing.T, b bundle, seed int64, state, owner map[string]string, held map[string]bool, pol map[string]fair.Policy, bound map[string]int, log []string, fail func(string, ...any)) {
	t.Helper()
	ctx := context.Background()
	where := map[string][]string{}
	msg, _ := b.rdb.HKeys(ctx, "fair:{"+q+"}:msg").Result()
	for _, id := range msg {
		where[id] = append(where[id], "msg")
	}
	pend, _ := b.rdb.LRange(ctx, "asynq:{"+q+"}:pending", 0, -1).Result()
	for _, id := range pend {
		where[id] = append(where[id], "pending")
		if held[tenantOf(id)] {
			fail("held tenant's task %s pending in asynq", id)
		}
	}
	act, _ := b.rdb.LRange(ctx, "asynq:{"+q+"}:active", 0, -1).Result()
	for _, id := range act {
		where[id] = append(where[id], "active")
	}
	for _, tn := range []string{"tn_a", "tn_b", "tn_c"} {
		kept, _ := b.rdb.HKeys(ctx, "fair:{"+q+"}:kept:"+tn).Result()
		for _, id := range kept {
			where[id] = append(where[id], "kept")
		}
		ids, _ := b.rdb.LRange(ctx, "fair:{"+q+"}:b:"+tn, 0, -1).Result()
		inMsg := 0
		for _, id := range msg {
			if tenantOf(id) == tn {
				inMsg++
			}
		}
		if len(ids) != inMsg {
			fail("tenant %s backlog list %d ids, msg hash %d", tn, len(ids), inMsg)
		}
		sort.Strings(ids)
		for i := 1; i < len(ids); i++ {
			if ids[i] == ids[i-1] {
				fail("backlog of %s has %s twice", tn, ids[i])
			}
		}
		d, _ := b.rdb.ZScore(ctx, "fair:{"+q+"}:depth", tn).Result()
		if int(d) != inMsg {
			fail("depth of %s = %v, backlog %d", tn, d, inMsg)
		}
	}
	for _, tn := range []string{"tn_a", "tn_b", "tn_c"} {
		n := 0
		for _, id := range append(append([]string{}, pend...), act...) {
			if tenantOf(id) == tn {
				n++
			}
		}
		if mr := bound[tn]; mr > 0 && n > mr {
			fail("tenant %s has %d admitted, cap %d (bound %d)", tn, n, pol[tn].MaxRunning, mr)
		}
		if mr := pol[tn].MaxRunning; mr > 0 {
			bound[tn] = max(mr, min(bound[tn], n))
		}
	}
	for id, st := range state {
		w := where[id]
		switch st {
		case "queued":
			if len(w) != 1 || w[0] == "active" {
				fail("queued task %s is at %v", id, w)
			}
		case "active":
			if len(w) != 1 || w[0] != "active" {
				fail("active task %s is at %v", id, w)
			}
		default:
			if len(w) != 0 {
				fail("%s task %s is at %v", st, id, w)
			}
		}
	}
}
