package tasks

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tenantctx"
)

// outageRig is an Enqueuer, with fair dispatch or without, over a
// redis-server of its own, whose client counts the commands it sends.
type outageRig struct {
	srv      *testenv.RedisServer
	rdb      *redis.Client
	enq      *Enqueuer
	sent     *testenv.CountCommands
	tenantID string
}

// newOutageRig starts the rig; opts (its Addr set here) configures the
// client.
func newOutageRig(t *testing.T, withFair bool, opts redis.Options) outageRig {
	t.Helper()
	r := outageRig{srv: testenv.StartRedis(t, testenv.RedisOptions{}), sent: &testenv.CountCommands{}, tenantID: "tn_acme"}
	opts.Addr = r.srv.Addr()
	r.rdb = redis.NewClient(&opts)
	t.Cleanup(func() { _ = r.rdb.Close() })
	r.rdb.AddHook(r.sent)
	if withFair {
		var tn [2]tenantctx.Tenant
		r.enq, _, _, tn = fairSetupOn(t, r.rdb, 0)
		r.tenantID = tn[0].ID
	} else {
		r.enq = NewEnqueuer(asynq.NewClientFromRedisClient(r.rdb), asynq.NewInspectorFromRedisClient(r.rdb), discardLogger())
	}
	return r
}

// beyondBound takes every token of slots (as calls still waiting for
// Redis hold them), then checks that call, given a 200 ms deadline,
// returns context.DeadlineExceeded without sending a command; it gives the
// tokens back.
func (r outageRig) beyondBound(t *testing.T, slots chan struct{}, what string, call func(context.Context) error) {
	t.Helper()
	for range cap(slots) {
		slots <- struct{}{}
	}
	sent := r.sent.Sent()
	ctx, cancel := context.WithTimeout(testContext(t), 200*time.Millisecond)
	err := call(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%s past its deadline with every slot taken: %v, want context.DeadlineExceeded", what, err)
	}
	if n := r.sent.Sent() - sent; n != 0 {
		t.Fatalf("a %s beyond the bound sent %d commands", what, n)
	}
	for range cap(slots) {
		<-slots
	}
}

// TestTenantTaskReturnsWhenCtxEnds: while Redis answers nothing (its
// process stopped), a task look-up returns as soon as its ctx ends, with
// ctx's error, whether its deadline passed or it was cancelled (a client
// that went away), through asynq's inspector (no fair dispatch) and the
// dispatcher's backlog (fair dispatch); when Redis answers again the
// look-ups left behind end, and a look-up finds the task. The look-ups
// running at once are bounded: with every one taken, a further look-up
// sends nothing and returns at its ctx's end.
func TestTenantTaskReturnsWhenCtxEnds(t *testing.T) {
	t.Parallel()
	for _, withFair := range []bool{false, true} {
		t.Run("fair="+strconv.FormatBool(withFair), func(t *testing.T) {
			t.Parallel()
			r := newOutageRig(t, withFair, redis.Options{})
			enq, rdb, tenantID := r.enq, r.rdb, r.tenantID
			enq.lookups = make(chan struct{}, 2)
			ctx := testContext(t)
			res, err := enq.Enqueue(ctx, InvoicePDF{TenantID: tenantID, InvoiceID: 1})
			if err != nil {
				t.Fatal(err)
			}
			taskID := res.Info.ID
			if _, err := enq.TenantTask(ctx, tenantID, taskID); err != nil {
				t.Fatalf("look-up while Redis runs: %v", err)
			}
			// Every look-up taken (as by look-ups still waiting for Redis):
			// a further one starts nothing.
			r.beyondBound(t, enq.lookups, "look-up", func(ctx context.Context) error {
				_, err := enq.TenantTask(ctx, tenantID, taskID)
				return err
			})

			resume := testenv.StopRedis(t, rdb)
			probe := testenv.Pinged(t, r.srv.Addr())
			// A request's deadline.
			dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			_, err = enq.TenantTask(dctx, tenantID, taskID)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("look-up past its deadline: %v, want context.DeadlineExceeded", err)
			}
			// A client that went away once its look-up started.
			running := len(enq.lookups)
			cctx, cancel := context.WithCancel(ctx)
			go func() {
				for len(enq.lookups) == running && cctx.Err() == nil {
					time.Sleep(time.Millisecond)
				}
				cancel()
			}()
			_, err = enq.TenantTask(cctx, tenantID, taskID)
			cancel()
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("look-up of a cancelled request: %v, want context.Canceled", err)
			}
			select {
			case <-probe:
				t.Fatal("Redis answered before the look-ups returned: it was not stopped")
			default:
			}

			resume()
			<-probe
			for deadline := time.Now().Add(time.Minute); len(enq.lookups) > 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%d look-ups still running a minute after Redis answered again", len(enq.lookups))
				}
			}
			if info, err := enq.TenantTask(ctx, tenantID, taskID); err != nil || info.ID != taskID {
				t.Fatalf("look-up once Redis answers again: %v, %v", info, err)
			}
		})
	}
}
