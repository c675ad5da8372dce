package tasks

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestEnqueueRefusedForNowThoughThePingPasses: Redis refuses the enqueue's
// script for a moment (MASTERDOWN: a replica whose link to its master is
// down, with replica-serve-stale-data no; BUSY: another script running
// past busy-reply-threshold) and takes commands again by the time the
// Enqueuer pings it, as when the link comes back or the script ends in
// between (and as a Redis before 7.0 answers PING while it refuses with
// MASTERDOWN). asynq reports the refusal as text only; the Enqueuer's
// error must carry it as a Redis error, so that the HTTP API answers 503
// with Retry-After, as for READONLY, instead of 500.
func TestEnqueueRefusedForNowThoughThePingPasses(t *testing.T) {
	t.Parallel()
	t.Run("MASTERDOWN", func(t *testing.T) {
		t.Parallel()
		refusedUntilThePing(t, "MASTERDOWN ",
			func(ctx context.Context, admin *redis.Client) error {
				if err := admin.ConfigSet(ctx, "replica-serve-stale-data", "no").Err(); err != nil {
					return err
				}
				// Port 1 on the loopback: nothing listens, so the link
				// stays down.
				return admin.ReplicaOf(ctx, "127.0.0.1", "1").Err()
			},
			func(ctx context.Context, admin *redis.Client) error {
				return admin.ReplicaOf(ctx, "NO", "ONE").Err()
			})
	})
	t.Run("BUSY", func(t *testing.T) {
		t.Parallel()
		var wg sync.WaitGroup
		t.Cleanup(wg.Wait)
		refusedUntilThePing(t, "BUSY ",
			func(ctx context.Context, admin *redis.Client) error {
				if err := admin.ConfigSet(ctx, "busy-reply-threshold", "10").Err(); err != nil {
					return err
				}
				// A script that runs until it is killed, on a connection
				// of its own.
				looper := redis.NewClient(&redis.Options{Addr: admin.Options().Addr, MaxRetries: -1})
				wg.Go(func() {
					defer looper.Close()
					_ = looper.Eval(context.Background(), "while true do end", nil).Err()
				})
				for {
					err := admin.Ping(ctx).Err()
					if redis.HasErrorPrefix(err, "BUSY ") {
						return nil
					}
					if ctx.Err() != nil {
						return ctx.Err()
					}
				}
			},
			func(ctx context.Context, admin *redis.Client) error {
				if err := admin.ScriptKill(ctx).Err(); err != nil {
					return err
				}
				for redis.HasErrorPrefix(admin.Ping(ctx).Err(), "BUSY ") {
					if ctx.Err() != nil {
						return ctx.Err()
					}
				}
				return nil
			})
	})
}

// refusedUntilThePing enqueues once, makes Redis refuse commands with
// reply (refuse), and enqueues again through a client that lets Redis
// take them (allow) before it sends its first PING: the second enqueue's
// error must carry reply as a Redis error.
func refusedUntilThePing(t *testing.T, reply string, refuse, allow func(context.Context, *redis.Client) error) {
	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	admin := srv.NewClient(redis.Options{})
	t.Cleanup(func() { _ = admin.Close() })
	rdb := srv.NewClient(redis.Options{})
	t.Cleanup(func() { _ = rdb.Close() })
	hook := &allowBeforePing{allow: func(ctx context.Context) error { return allow(ctx, admin) }}
	rdb.AddHook(hook)
	enq := NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), discardLogger())
	ctx := testContext(t)
	if _, err := enq.Enqueue(ctx, InvoicePDF{TenantID: "tn_refused", InvoiceID: 1}); err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	if err := refuse(ctx, admin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = allow(context.Background(), admin) })
	hook.mu.Lock()
	hook.armed = true
	hook.mu.Unlock()

	_, err := enq.Enqueue(ctx, InvoicePDF{TenantID: "tn_refused", InvoiceID: 2})
	if err == nil {
		t.Fatalf("enqueue while Redis answers %s succeeded", strings.TrimSpace(reply))
	}
	hook.mu.Lock()
	allowed, allowErr := !hook.armed, hook.err
	hook.mu.Unlock()
	if !allowed || allowErr != nil {
		t.Fatalf("the enqueue sent no PING after its refusal, or Redis did not take commands again: %v (enqueue: %v)", allowErr, err)
	}
	if !redis.HasErrorPrefix(err, reply) {
		t.Fatalf("enqueue while Redis answers %s: %v; want it in the chain as a Redis error", strings.TrimSpace(reply), err)
	}
}

// allowBeforePing runs allow before the first PING sent once armed.
type allowBeforePing struct {
	allow func(context.Context) error
	mu    sync.Mutex
	armed bool
	err   error
}

func (h *allowBeforePing) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *allowBeforePing) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "ping" {
			h.mu.Lock()
			if h.armed {
				h.armed = false
				h.err = h.allow(ctx)
			}
			h.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func (h *allowBeforePing) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
