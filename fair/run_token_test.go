package fair_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/invoicing/tenantworker/fair"
)

// runHeaderOf returns the run token in the headers of asynq's message of
// task id (field 15, map entries {1: key, 2: value}; the last entry of a
// key wins, as in asynq's decoder), and the message's length.
func runHeaderOf(t *testing.T, b bundle, id string) (string, int) {
	t.Helper()
	msg, err := b.rdb.HGet(context.Background(), "asynq:{"+q+"}:t:"+id, "msg").Bytes()
	if err != nil {
		t.Fatalf("asynq's message of %s: %v", id, err)
	}
	var run string
	for rest := msg; len(rest) > 0; {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			t.Fatalf("message of %s: %v", id, protowire.ParseError(n))
		}
		rest = rest[n:]
		if num == 15 && typ == protowire.BytesType {
			entry, n := protowire.ConsumeBytes(rest)
			if n < 0 {
				t.Fatalf("message of %s: %v", id, protowire.ParseError(n))
			}
			rest = rest[n:]
			var key, value string
			for len(entry) > 0 {
				f, _, n := protowire.ConsumeTag(entry)
				entry = entry[n:]
				v, m := protowire.ConsumeBytes(entry)
				if n < 0 || m < 0 {
					t.Fatalf("message of %s: bad header entry", id)
				}
				entry = entry[m:]
				if f == 1 {
					key = string(v)
				} else {
					value = string(v)
				}
			}
			if key == fair.RunHeader {
				run = value
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, rest)
		if n < 0 {
			t.Fatalf("message of %s: %v", id, protowire.ParseError(n))
		}
		rest = rest[n:]
	}
	return run, len(msg)
}

// recordedRun returns the run token of task id's admission record ("" when
// it has none or is not admitted).
func recordedRun(t *testing.T, b bundle, id string) string {
	t.Helper()
	meta, err := b.rdb.HGet(context.Background(), "fair:{"+q+"}:adm", id).Result()
	if err == redis.Nil {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(meta, "\t")
	if len(f) < 6 {
		return ""
	}
	return f[5]
}

// TestLateReportDoesNotEndANewRun: the report of a task id's earlier run,
// delivered after the id was admitted again, must leave the new run's
// running slot taken, so that the tenant stays under its running cap of 1;
// the new run's own report frees it. The id comes back by a new enqueue
// once the lease check freed the vanished first run, by a replacement of
// the finished task, and by asynq's retry of it taking a slot at the gate
// (with the first run's slot freed by the lease check, and with the
// report of the first attempt simply late). Before run tokens, the late
// report freed the new run's slot and the tenant's next task was admitted
// beside it.
func TestLateReportDoesNotEndANewRun(t *testing.T) {
	t.Parallel()
	A := "asynq:{" + q + "}:"
	p := fair.Policy{Weight: 1, MaxRunning: 1}
	// afterLease lets the lease of the first run run out and the lease
	// check free its slot (asynq no longer holds it running).
	afterLease := func(t *testing.T, b bundle, tn string) {
		b.clock.Advance(fair.DefaultLease + time.Second)
		if _, err := b.d.Pump(context.Background(), q); err != nil {
			t.Fatal(err)
		}
		if s := stats(t, b, tn); s.Admitted != 0 {
			t.Fatalf("after the lease ran out: %+v; want the first run's slot freed", s)
		}
	}
	// failed does what asynq does with a failed attempt: the retry set
	// holds the task.
	failed := func(b bundle, id string) {
		ctx := context.Background()
		b.rdb.LRem(ctx, A+"active", 0, id)
		b.rdb.HSet(ctx, A+"t:"+id, "state", "retry")
		b.rdb.ZAdd(ctx, A+"retry", redis.Z{Score: float64(b.clock.Now().Unix()), Member: id})
	}
	// retried makes the retry pending, a worker takes it and asks the gate.
	retried := func(t *testing.T, b bundle, tn, id string) string {
		ctx := context.Background()
		b.rdb.ZRem(ctx, A+"retry", id)
		b.rdb.HSet(ctx, A+"t:"+id, "state", "active")
		b.rdb.LPush(ctx, A+"active", id)
		parked, run, err := b.d.GateRun(ctx, q, id, tn, "invoice:pdf")
		if err != nil || parked || run == "" {
			t.Fatalf("GateRun of the retry = %v, %q, %v; want it to run under a run token", parked, run, err)
		}
		return run
	}
	// again admits the id again after its first run; it returns the new
	// run's token, as the worker running it learns it.
	for _, tc := range []struct {
		name  string
		again func(t *testing.T, b bundle, tn, id string) string
	}{{
		name: "enqueued again after the lease",
		again: func(t *testing.T, b bundle, tn, id string) string {
			done(t, b, id) // asynq deleted it (no retention); no report came yet
			afterLease(t, b, tn)
			if res := enqueue(t, b, tn, p, 0, 1); res[0].Existing {
				t.Fatalf("enqueue of the id again: %+v; want a new run", res[0])
			}
			if got := dequeue(t, b); got != id {
				t.Fatalf("dequeued %q, want the new run of %s", got, id)
			}
			run, _ := runHeaderOf(t, b, id)
			return run
		},
	}, {
		name: "replaced after the lease",
		again: func(t *testing.T, b bundle, tn, id string) string {
			ctx := context.Background()
			b.rdb.LRem(ctx, A+"active", 0, id)
			b.rdb.HSet(ctx, A+"t:"+id, "state", "completed")
			b.rdb.ZAdd(ctx, A+"completed", redis.Z{Score: float64(b.clock.Now().Add(time.Hour).Unix()), Member: id})
			afterLease(t, b, tn)
			tk := task(tn, 0)
			tk.ReplaceFinished = true
			if res, err := b.d.Enqueue(ctx, tn, p, []fair.Task{tk}); err != nil || res[0].Existing {
				t.Fatalf("replacing the finished task: %+v, %v; want a new run", res, err)
			}
			if got := dequeue(t, b); got != id {
				t.Fatalf("dequeued %q, want the new run of %s", got, id)
			}
			run, _ := runHeaderOf(t, b, id)
			return run
		},
	}, {
		name: "retried at the gate after the lease",
		again: func(t *testing.T, b bundle, tn, id string) string {
			failed(b, id)
			afterLease(t, b, tn)
			return retried(t, b, tn, id)
		},
	}, {
		name: "retried at the gate while still admitted",
		again: func(t *testing.T, b bundle, tn, id string) string {
			failed(b, id)
			return retried(t, b, tn, id)
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 1)
			ctx := context.Background()
			tn := "tn_late_" + strings.ReplaceAll(tc.name, " ", "_")
			enqueue(t, b, tn, p, 0, 1)
			id := dequeue(t, b)
			first, _ := runHeaderOf(t, b, id)
			if first == "" || recordedRun(t, b, id) != first {
				t.Fatalf("first run: header %q, record %q; want the admission's run token in both", first, recordedRun(t, b, id))
			}

			second := tc.again(t, b, tn, id)
			recorded := recordedRun(t, b, id)
			if s := stats(t, b, tn); s.Admitted != 1 {
				t.Fatalf("with the second run going: %+v; want it counted", s)
			}

			// The first run's report, late.
			late := fair.Report{Queue: q, TaskID: id, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond, Run: first}
			if err := b.d.Complete(ctx, q, []fair.Report{late}); err != nil {
				t.Fatal(err)
			}
			enqueue(t, b, tn, p, 1, 1)
			if s := stats(t, b, tn); s.Admitted != 1 || s.Waiting != 1 {
				t.Fatalf("after the first run's late report: %+v; want the second run still counted and the next task waiting (cap 1)", s)
			}

			if second == "" || second == first || recorded != second {
				t.Fatalf("second run %q (first %q), recorded %q; want a token of its own, recorded", second, first, recorded)
			}

			// The second run's own report frees its slot.
			own := late
			own.Run = second
			if err := b.d.Complete(ctx, q, []fair.Report{own}); err != nil {
				t.Fatal(err)
			}
			if s := stats(t, b, tn); s.Admitted != 1 || s.Waiting != 0 || recordedRun(t, b, id) != "" {
				t.Fatalf("after the second run's report: %+v; want its slot freed and the next task admitted", s)
			}
		})
	}
}

// TestReportWithoutRunEndsAnyRun: a report without a run token (a worker
// of the release before run tokens, Dispatcher.Complete) ends whatever run
// of the id is admitted, and a record without one (admitted by that
// release) is ended by any report, as before: nothing stays admitted
// during a rolling upgrade.
func TestReportWithoutRunEndsAnyRun(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_upgrade"
	p := fair.Policy{Weight: 1, MaxRunning: 1}
	enqueue(t, b, tn, p, 0, 2)
	id := dequeue(t, b)
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: id, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	done(t, b, id)
	if s := stats(t, b, tn); s.Admitted != 1 || s.Waiting != 0 {
		t.Fatalf("after a report without a run: %+v; want the slot freed and the next task admitted", s)
	}

	// An admission record of the earlier release: no run token.
	next := dequeue(t, b)
	key := "fair:{" + q + "}:adm"
	meta, err := b.rdb.HGet(ctx, key, next).Result()
	if err != nil {
		t.Fatal(err)
	}
	b.rdb.HSet(ctx, key, next, meta[:strings.LastIndexByte(meta, '\t')])
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: next, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond, Run: "12345"}}); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, tn); s.Admitted != 0 {
		t.Fatalf("a record without a run after a report with one: %+v; want it ended", s)
	}
}

// TestRunHeaderReachesTheHandler: a real asynq server hands the handler
// the run token admission wrote into the task's headers, also after the
// task went back to its backlog (a hold) and was admitted again under a
// new run, and the message does not grow by a header each time.
func TestRunHeaderReachesTheHandler(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_header"
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, 1)
	id := task(tn, 0).Message.ID
	first, size := runHeaderOf(t, b, id)
	if _, err := b.d.Hold(ctx, tn, fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	if _, err := b.d.Release(ctx, tn, fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	second, size2 := runHeaderOf(t, b, id)
	if second == "" || second == first || recordedRun(t, b, id) != second {
		t.Fatalf("admitted again: header %q (first %q), record %q; want a new run named in both", second, first, recordedRun(t, b, id))
	}
	if size2 > size+len(second)-len(first) {
		t.Fatalf("the message grew from %d to %d bytes: a run header per admission", size, size2)
	}

	got := make(chan string, 1)
	srv := asynq.NewServerFromRedisClient(b.rdb, asynq.Config{Concurrency: 1, Queues: map[string]int{q: 1},
		TaskCheckInterval: 10 * time.Millisecond, LogLevel: asynq.FatalLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc("invoice:pdf", func(ctx context.Context, task *asynq.Task) error {
		got <- task.Headers()[fair.RunHeader]
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	select {
	case run := <-got:
		if run != second {
			t.Fatalf("the handler saw run %q, want %q", run, second)
		}
	case <-time.After(time.Minute): // a bound for the failure message, not a measurement
		t.Fatal("asynq did not run the admitted task")
	}
}
