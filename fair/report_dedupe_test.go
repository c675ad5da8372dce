package fair_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// ambiguousFirstScript makes the first script call of its client that
// Redis ran look failed (as a timeout after the script ran does), after
// running between; it closes resent once the next script call returned.
type ambiguousFirstScript struct {
	calls   *atomic.Int32
	between func()
	resent  chan struct{}
}

func (h ambiguousFirstScript) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h ambiguousFirstScript) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h ambiguousFirstScript) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil || (cmd.Name() != "evalsha" && cmd.Name() != "eval") {
			return err
		}
		switch h.calls.Add(1) {
		case 1:
			h.between()
			err = errors.New("injected: i/o timeout after the script ran")
			cmd.SetErr(err)
		case 2:
			close(h.resent)
		}
		return err
	}
}

// TestResentReportsDoNotEndANewRun: a Reporter sends a batch again after
// an ambiguous error (its first send was applied, the reply lost). When the
// task id was admitted again in between (a replacement of the finished
// task, or asynq's retry of it let through by Gate), the batch sent again
// must not end that new run: its slot stays taken, and the tenant's next
// task waits under its running cap of 1. Before the dispatcher recorded
// the batches of each Reporter it applied, the second send freed the new
// run's slot and the next task was admitted next to it.
func TestResentReportsDoNotEndANewRun(t *testing.T) {
	t.Parallel()
	A := "asynq:{" + q + "}:"
	p := fair.Policy{Weight: 1, MaxRunning: 1}
	for _, tc := range []struct {
		name string
		// finish ends the first run of id in asynq as the worker's
		// attempt does; again admits id again.
		finish, again func(t *testing.T, b bundle, tn, id string)
	}{{
		name: "replacement",
		finish: func(t *testing.T, b bundle, tn, id string) {
			ctx := context.Background()
			// asynq's done script with a retention: the task is kept, completed.
			b.rdb.LRem(ctx, A+"active", 0, id)
			b.rdb.HSet(ctx, A+"t:"+id, "state", "completed")
			b.rdb.ZAdd(ctx, A+"completed", redis.Z{Score: float64(b.clock.Now().Add(time.Hour).Unix()), Member: id})
		},
		again: func(t *testing.T, b bundle, tn, id string) {
			tk := task(tn, 0)
			tk.ReplaceFinished = true
			res, err := b.d.Enqueue(context.Background(), tn, p, []fair.Task{tk})
			if err != nil || res[0].Existing {
				t.Errorf("replacing the reported task: %+v, %v; want a new run", res, err)
			}
			// A worker takes it (a report of a pending task is not applied).
			if got := dequeue(t, b); got != id {
				t.Errorf("dequeued %q, want the new run of %s", got, id)
			}
		},
	}, {
		name: "retry",
		finish: func(t *testing.T, b bundle, tn, id string) {
			ctx := context.Background()
			// The attempt failed: asynq's retry set holds the task.
			b.rdb.LRem(ctx, A+"active", 0, id)
			b.rdb.HSet(ctx, A+"t:"+id, "state", "retry")
			b.rdb.ZAdd(ctx, A+"retry", redis.Z{Score: float64(b.clock.Now().Unix()), Member: id})
		},
		again: func(t *testing.T, b bundle, tn, id string) {
			ctx := context.Background()
			// asynq's forwarder makes it pending, a worker takes it, and
			// Gate counts the retry as running.
			b.rdb.ZRem(ctx, A+"retry", id)
			b.rdb.HSet(ctx, A+"t:"+id, "state", "active")
			b.rdb.LPush(ctx, A+"active", id)
			if parked, err := b.d.Gate(ctx, q, id, tn, "invoice:pdf"); err != nil || parked {
				t.Errorf("Gate of the retry with a free slot = %v, %v; want it to run", parked, err)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 1)
			ctx := context.Background()
			tn := "tn_resent_" + tc.name
			first := task(tn, 0)
			first.ReplaceFinished = true
			if _, err := b.d.Enqueue(ctx, tn, p, []fair.Task{first}); err != nil {
				t.Fatal(err)
			}
			id := dequeue(t, b)
			if id != first.Message.ID {
				t.Fatalf("dequeued %q, want %s", id, first.Message.ID)
			}
			tc.finish(t, b, tn, id)

			// The worker's Reporter has a client of its own.
			opt := b.rdb.Options()
			wc := redis.NewClient(&redis.Options{Addr: opt.Addr, DB: opt.DB})
			t.Cleanup(func() { _ = wc.Close() })
			resent := make(chan struct{})
			wc.AddHook(ambiguousFirstScript{calls: new(atomic.Int32), resent: resent, between: func() {
				if s := stats(t, b, tn); s.Admitted != 0 {
					t.Errorf("after the first send: %+v; want the report applied (nothing admitted)", s)
				}
				tc.again(t, b, tn, id)
				if s := stats(t, b, tn); s.Admitted != 1 {
					t.Errorf("after the new run was admitted: %+v; want it counted", s)
				}
			}})
			wd := fair.New(wc, fair.Config{MinPending: 1, PendingPerSlot: 1, PendingTime: time.Microsecond, Now: b.clock.Now})
			r := wd.NewReporter(slog.New(slog.DiscardHandler))
			r.Report(fair.Report{Queue: q, TaskID: id, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond})
			select {
			case <-resent:
			case <-time.After(time.Minute):
				t.Fatal("the Reporter did not send the failed batch again")
			}
			closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			r.Close(closeCtx)

			if s := stats(t, b, tn); s.Admitted != 1 {
				t.Fatalf("after the batch was sent again: %+v; want the new run still counted (1 admitted)", s)
			}
			enqueue(t, b, tn, p, 1, 1)
			if s := stats(t, b, tn); s.Admitted != 1 || s.Waiting != 1 {
				t.Fatalf("the next task: %+v; want it waiting behind the running cap of 1 (1 admitted, 1 waiting)", s)
			}
		})
	}
}

// TestReporterClosedTwiceAndReportsAfterClose: closing a Reporter again
// does not panic, and a report made after Close is dropped with a warning
// instead of waiting, unsent, in a queue nothing reads.
func TestReporterClosedTwiceAndReportsAfterClose(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	var logs testenv.LogBuffer
	rep := fair.New(rdb, fair.Config{}).NewReporter(slog.New(slog.NewTextHandler(&logs, nil)))
	ctx := context.Background()
	rep.Close(ctx)
	rep.Close(ctx)
	rep.Report(fair.Report{Queue: "default", TaskID: "late-1", TenantID: "tn_late", Type: "invoice:pdf", Cost: time.Millisecond})
	if !strings.Contains(logs.String(), "after the reporter was closed") || !strings.Contains(logs.String(), "late-1") {
		t.Fatalf("a report after Close: want it dropped with a warning naming it; log:\n%s", logs.String())
	}
}
