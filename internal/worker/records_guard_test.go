package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/tasks"
)

// holdScriptUntil is a go-redis hook that holds every EVALSHA or EVAL
// until the ctx it is given (through ctxs) is done, or, with after set,
// until after's script ran: KeepLastAttempt's script runs after the
// attempt's deadline passed, and the record asynq's error handler writes
// then is written after it.
type holdScriptUntil struct {
	ctxs  chan context.Context
	after *holdScriptUntil
	ran   atomic.Int64
}

func (h *holdScriptUntil) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *holdScriptUntil) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		name := strings.ToLower(cmd.Name())
		if name != "evalsha" && name != "eval" {
			return next(ctx, cmd)
		}
		if h.after != nil {
			for i := 0; i < 100 && h.after.ran.Load() == 0; i++ {
				time.Sleep(50 * time.Millisecond)
			}
		}
		select {
		case tctx := <-h.ctxs:
			<-tctx.Done()
		default:
		}
		h.ran.Add(1)
		return next(ctx, cmd)
	}
}

func (h *holdScriptUntil) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// injectLastAttempt puts an invoice:pdf task of tenantID on its last
// attempt, with timeout, into asynq's pending list (as injectRetry).
func injectLastAttempt(t *testing.T, rdb *redis.Client, tenantID string, timeout time.Duration) string {
	t.Helper()
	p := tasks.InvoicePDF{TenantID: tenantID, InvoiceID: 1}
	payload, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	id := p.Spec().TaskID
	msg := fair.Message{ID: id, Type: tasks.TypeInvoicePDF, Queue: tasks.QueueDefault, Payload: payload, Retry: lastRetry, Timeout: timeout}.Encode()
	msg = protowire.AppendVarint(protowire.AppendTag(msg, 6, protowire.VarintType), uint64(lastRetry))
	A := "asynq:{" + tasks.QueueDefault + "}:"
	if err := rdb.HSet(context.Background(), A+"t:"+id, "msg", msg, "state", "pending", "pending_since", time.Now().UnixNano()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.LPush(context.Background(), A+"pending", id).Err(); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestNoArchiveRecordOfATaskKeptAtItsDeadline: a waiting last attempt
// whose deadline passes while KeepLastAttempt puts it back into asynq's
// retry set. asynq calls its error handler with the deadline (a timed-out
// last attempt: "archived") without waiting for the handler; its archive
// then finds the task no longer active and leaves it in the retry set. The
// tenant gets no record of it as archived "timed out" (which GET
// /v1/tasks/{id} would answer once the task left asynq, a drain say, and
// which takes a place among the tenant's capped records).
func TestNoArchiveRecordOfATaskKeptAtItsDeadline(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	opt, rdb := newRedisClient(t)
	hook := &holdScriptUntil{ctxs: make(chan context.Context, 1)}
	keepRdb := redis.NewClient(&redis.Options{Addr: opt.Addr})
	keepRdb.AddHook(hook)
	t.Cleanup(func() { _ = keepRdb.Close() })
	recRdb := redis.NewClient(&redis.Options{Addr: opt.Addr})
	recRdb.AddHook(&holdScriptUntil{after: hook})
	t.Cleanup(func() { _ = recRdb.Close() })
	records := tasks.NewTaskRecords(recRdb, tasks.TaskRecordsOptions{})
	const tenantID = "tn_keepdeadline"
	keep := worker.KeepLastAttempt(keepRdb)(asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
		hook.ctxs <- ctx
		return fmt.Errorf("tenant %s is provisioning: %w", tenantID, worker.ErrTenantNotReady)
	}))
	startServerOn(t, rdb, keep, worker.ServerOptions{Concurrency: 1, Records: records})
	id := injectLastAttempt(t, rdb, tenantID, 2*time.Second)
	testenv.WaitFor(t, 30*time.Second, "the keep script ran", func() bool { return hook.ran.Load() > 0 })
	time.Sleep(time.Second) // asynq settles the attempt
	if st := state(t, rdb, id); st != "retry" {
		t.Fatalf("the task is %s in asynq; want retry (the keep put it back)", st)
	}
	rec, err := records.Get(ctx, tenantID, id)
	if err == nil {
		t.Fatalf("the tenant has a record of the task as archived (%+v) while it waits in asynq's retry set", rec)
	} else if !errors.Is(err, tasks.ErrTaskNotFound) {
		t.Fatal(err)
	}
}

// TestNoArchiveRecordOfATaskNoLongerActive: a task that fails on its last
// attempt after something else took it from asynq (a drain, a hand-back)
// is not archived by asynq (its archive finds nothing to move), so the
// tenant gets no record of it; a task asynq does archive still gets one.
func TestNoArchiveRecordOfATaskNoLongerActive(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, rdb := newRedisClient(t)
	records := tasks.NewTaskRecords(rdb, tasks.TaskRecordsOptions{})
	const taken, kept = "tn_recgone", "tn_reclive"
	A := "asynq:{" + tasks.QueueDefault + "}:"
	srv := asynq.NewServerFromRedisClient(rdb, worker.ServerConfig(worker.ServerOptions{Concurrency: 1, Logger: discardLogger(),
		ShutdownTimeout: 5 * time.Second, Records: records}))
	if err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		if strings.Contains(id, taken) {
			if err := rdb.LRem(ctx, A+"active", 0, id).Err(); err != nil {
				return err
			}
			if err := rdb.Del(ctx, A+"t:"+id).Err(); err != nil {
				return err
			}
		}
		return errors.New("mail server down")
	})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	gone := injectLastAttempt(t, rdb, taken, time.Minute)
	live := injectLastAttempt(t, rdb, kept, time.Minute)
	testenv.WaitFor(t, 30*time.Second, "the failed task archived", func() bool { return state(t, rdb, live) == "archived" })
	testenv.WaitFor(t, 30*time.Second, "the taken task's attempt ended", func() bool {
		n, err := rdb.LLen(ctx, A+"active").Result()
		return err == nil && n == 0 && state(t, rdb, gone) == "gone"
	})
	time.Sleep(time.Second)
	if rec, err := records.Get(ctx, kept, live); err != nil || rec.Reason != worker.ReasonRetriesExhausted {
		t.Fatalf("the archived task's record: %+v, %v; want %q", rec, err, worker.ReasonRetriesExhausted)
	}
	if rec, err := records.Get(ctx, taken, gone); !errors.Is(err, tasks.ErrTaskNotFound) {
		t.Fatalf("the tenant has a record (%+v, %v) of a task asynq never archived", rec, err)
	}
}
