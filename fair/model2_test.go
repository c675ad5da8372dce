package fair_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/invoicing/tenantworker/fair"
)

// runOf reads the fair-run header of an asynq message (the last entry wins).
func runOf(msg []byte) string {
	run := ""
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return run
		}
		msg = msg[n:]
		if num == 15 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(msg)
			var k, val string
			for e := v; len(e) > 0; {
				fn, ft, l := protowire.ConsumeTag(e)
				e = e[l:]
				b, l2 := protowire.ConsumeBytes(e)
				_ = ft
				if fn == 1 {
					k = string(b)
				} else {
					val = string(b)
				}
				e = e[l2:]
			}
			if k == fair.RunHeader {
				run = val
			}
			msg = msg[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, msg)
		msg = msg[m:]
	}
	return run
}

// TestRandomRunsKeepTheInvariants is TestRandomOperationsKeepTheInvariants
// with what asynq does between the dispatcher's steps: retries that its
// forwarder moves back to pending, workers killed mid-task (lease lost),
// shutdowns that requeue active tasks, reports that name their run. It
// checks that every task runs once per admission, that caps hold, and
// that a held tenant's task never runs. FAIR_MODEL_SEEDS sets how many
// seeds run (modelSeeds).
func TestRandomRunsKeepTheInvariants(t *testing.T) {
	for seed := range modelSeeds(t) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runModel2(t, int64(seed)) })
	}
}

type attempt struct {
	id, run string
}

func runModel2(t *testing.T, seed int64) {
	b := setup(t, 3)
	ctx := context.Background()
	r := rand.New(rand.NewSource(seed))
	tenants := []string{"tn_a", "tn_b", "tn_c"}
	pol := map[string]fair.Policy{
		"tn_a": {Weight: 1, MaxRunning: 2},
		"tn_b": {Weight: 2, MaxRunning: 1},
		"tn_c": {Weight: 1, MaxRunning: 3},
	}
	state := map[string]string{}
	retried := map[string]int{}
	held := map[string]bool{}
	var active []attempt
	next := map[string]int{}
	var log []string
	fail := func(format string, a ...any) {
		t.Helper()
		t.Fatalf("seed %d after %v: %s", seed, log[max(0, len(log)-25):], fmt.Sprintf(format, a...))
	}
	A := "asynq:{" + q + "}:"
	for step := 0; step < 400; step++ {
		tn := tenants[r.Intn(len(tenants))]
		switch op := r.Intn(100); {
		case op < 20:
			var tasks []fair.Task
			for range 1 + r.Intn(4) {
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
				st := state[id]
				log = append(log, fmt.Sprintf("enq %s ex=%v st=%s(%s)", id, x.Existing, x.State, st))
				switch st {
				case "", "done", "discarded":
					if x.Existing && !(st == "" && seenEarlier(tasks[:i], id)) {
						fail("enqueue of %s (model %q) answered existing %+v", id, st, x)
					}
					if !x.Existing {
						state[id] = "queued"
						retried[id] = 0
					}
				default:
					if !x.Existing {
						fail("enqueue of %s (model %q) answered new", id, st)
					}
				}
			}
		case op < 45: // dequeue
			id, err := b.rdb.LMove(ctx, A+"pending", A+"active", "RIGHT", "LEFT").Result()
			if err != nil {
				continue
			}
			b.rdb.HSet(ctx, A+"t:"+id, "state", "active")
			tn := tenantOf(id)
			if state[id] != "queued" && state[id] != "retrying" {
				fail("dequeued %s in model state %q", id, state[id])
			}
			msg, _ := b.rdb.HGet(ctx, A+"t:"+id, "msg").Bytes()
			run := runOf(msg)
			revoke := func() {
				b.rdb.LRem(ctx, A+"active", 0, id)
				b.rdb.Del(ctx, A+"t:"+id)
			}
			if retried[id] > 0 || run == "" {
				parked, grun, err := b.d.GateRun(ctx, q, id, tn, "invoice:pdf")
				if errors.Is(err, fair.ErrDrained) {
					revoke()
					log = append(log, "drained-handback "+id)
					continue
				}
				if err != nil {
					fail("gate: %v", err)
				}
				if parked {
					revoke()
					state[id] = "queued"
					log = append(log, "gate-park "+id)
					continue
				}
				run = grun
			}
			if held[tn] {
				ok, err := b.d.ParkRun(ctx, q, id, tn, "invoice:pdf", run)
				if err != nil || !ok {
					fail("park %s: %v %v", id, ok, err)
				}
				revoke()
				state[id] = "queued"
				log = append(log, "park "+id)
				continue
			}
			state[id] = "active"
			active = append(active, attempt{id, run})
			log = append(log, "deq "+id+" run "+run)
		case op < 65: // finish an attempt: success, failure (retry), or shutdown requeue
			if len(active) == 0 {
				continue
			}
			i := r.Intn(len(active))
			a := active[i]
			active = append(active[:i], active[i+1:]...)
			id := a.id
			how := r.Intn(10)
			report := true
			switch {
			case how < 6:
				b.rdb.LRem(ctx, A+"active", 0, id)
				b.rdb.Del(ctx, A+"t:"+id)
				state[id] = "done"
				log = append(log, "done "+id)
			case how < 9:
				report = r.Intn(4) != 0 // or killed: asynq's recoverer retries it
				b.rdb.LRem(ctx, A+"active", 0, id)
				b.rdb.ZAdd(ctx, A+"retry", redisZ(float64(b.clock.Now().Unix()), id))
				b.rdb.HSet(ctx, A+"t:"+id, "state", "retry")
				retried[id]++
				state[id] = "retrying"
				log = append(log, "fail "+id)
			default:
				b.rdb.LRem(ctx, A+"active", 0, id)
				b.rdb.LPush(ctx, A+"pending", id)
				b.rdb.HSet(ctx, A+"t:"+id, "state", "pending")
				state[id] = "queued"
				report = r.Intn(2) == 0
				log = append(log, "requeue "+id)
			}
			if report {
				if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: id, TenantID: tenantOf(id), Type: "invoice:pdf", Cost: time.Millisecond, Run: a.run}}); err != nil {
					fail("complete: %v", err)
				}
			}
		case op < 70: // asynq's forwarder
			ids, _ := b.rdb.ZRange(ctx, A+"retry", 0, -1).Result()
			for _, id := range ids {
				b.rdb.ZRem(ctx, A+"retry", id)
				b.rdb.LPush(ctx, A+"pending", id)
				b.rdb.HSet(ctx, A+"t:"+id, "state", "pending")
			}
			log = append(log, fmt.Sprintf("forward %d", len(ids)))
		case op < 77:
			if _, err := b.d.Hold(ctx, tn, fair.Paused, q); err != nil {
				fail("hold: %v", err)
			}
			held[tn] = true
			log = append(log, "hold "+tn)
		case op < 84:
			if _, err := b.d.Release(ctx, tn, fair.Paused, q); err != nil {
				fail("release: %v", err)
			}
			held[tn] = false
			log = append(log, "release "+tn)
		case op < 89:
			n, err := b.d.Drain(ctx, tn, q)
			if err != nil {
				fail("drain: %v", err)
			}
			gone := 0
			for id, st := range state {
				if (st != "queued" && st != "retrying") || tenantOf(id) != tn {
					continue
				}
				if somewhere(b, id) {
					if st == "queued" {
						fail("drain of %s left its queued task %s", tn, id)
					}
					continue
				}
				gone++
				state[id] = "discarded"
			}
			log = append(log, fmt.Sprintf("drain %s %+v gone %d", tn, n, gone))
			if n.Total() != gone {
				fail("drain of %s discarded %+v, %d tasks went", tn, n, gone)
			}
		default:
			b.clock.Advance(time.Duration(r.Intn(50)) * time.Second)
			if err := b.d.Heartbeat(ctx, q, "w1", 2, time.Hour); err != nil {
				fail("heartbeat: %v", err)
			}
			log = append(log, "beat")
		}
		checkModel2(t, b, state, held, pol, fail)
	}
}

func checkModel2(t *testing.T, b bundle, state map[string]string, held map[string]bool, pol map[string]fair.Policy, fail func(string, ...any)) {
	t.Helper()
	ctx := context.Background()
	A := "asynq:{" + q + "}:"
	where := map[string][]string{}
	msg, _ := b.rdb.HKeys(ctx, "fair:{"+q+"}:msg").Result()
	for _, id := range msg {
		where[id] = append(where[id], "msg")
	}
	pend, _ := b.rdb.LRange(ctx, A+"pending", 0, -1).Result()
	for _, id := range pend {
		where[id] = append(where[id], "pending")
	}
	act, _ := b.rdb.LRange(ctx, A+"active", 0, -1).Result()
	for _, id := range act {
		where[id] = append(where[id], "active")
	}
	retry, _ := b.rdb.ZRange(ctx, A+"retry", 0, -1).Result()
	for _, id := range retry {
		where[id] = append(where[id], "retry")
	}
	for _, tn := range []string{"tn_a", "tn_b", "tn_c"} {
		kept, _ := b.rdb.HKeys(ctx, "fair:{"+q+"}:kept:"+tn).Result()
		for _, id := range kept {
			where[id] = append(where[id], "kept")
		}
		run, _ := b.rdb.SCard(ctx, "fair:{"+q+"}:run:"+tn).Result()
		if mr := pol[tn].MaxRunning; mr > 0 && int(run) > mr {
			fail("tenant %s has %d runs, cap %d", tn, run, mr)
		}
		nact := 0
		for _, id := range act {
			if tenantOf(id) == tn && state[id] == "active" {
				nact++
			}
		}
		if mr := pol[tn].MaxRunning; mr > 0 && nact > mr {
			fail("tenant %s has %d running, cap %d", tn, nact, mr)
		}
	}
	for id, st := range state {
		w := where[id]
		switch st {
		case "queued", "retrying":
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

func redisZ(score float64, member string) redis.Z { return redis.Z{Score: score, Member: member} }

func somewhere(b bundle, id string) bool {
	ctx := context.Background()
	A := "asynq:{" + q + "}:"
	if b.rdb.HExists(ctx, "fair:{"+q+"}:msg", id).Val() {
		return true
	}
	if b.rdb.Exists(ctx, A+"t:"+id).Val() == 1 {
		return true
	}
	return b.rdb.HExists(ctx, "fair:{"+q+"}:kept:"+tenantOf(id), id).Val()
}
