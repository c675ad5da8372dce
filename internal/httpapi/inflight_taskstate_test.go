package httpapi_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/tasks"
)

// TestKeyRevokedInFlightTaskStateAnswersNothing: GET /v1/tasks/{id}
// waits after its authentication for its look-up in Redis (for a slot
// among the look-ups running, and for Redis to answer, up to
// REQUEST_TIMEOUT). A key revoked, or a tenant suspended or deleted,
// while it waits gets the task's state (its result may hold an invoice's
// figures) no more: the request answers as a new one would, once the
// change has answered. It answered 200 with the task.
func TestKeyRevokedInFlightTaskStateAnswersNothing(t *testing.T) {
	for _, c := range credentialChanges(t) {
		t.Run(c.name, func(t *testing.T) {
			g := &gateHook{}
			b := setup(t, func(o *httpapi.Options) {
				// The look-ups' Redis client passes its commands through g.
				rdb := redis.NewClient(&redis.Options{Addr: o.Redis.(*redis.Client).Options().Addr})
				rdb.AddHook(g)
				t.Cleanup(func() { _ = rdb.Close() })
				inspector := asynq.NewInspectorFromRedisClient(rdb)
				client := asynq.NewClientFromRedisClient(rdb)
				o.Enqueuer = tasks.NewEnqueuer(client, inspector, o.Logger, tasks.WithRedis(rdb)).WithTaskRecords(o.TaskRecords)
			})
			tn := b.active(t, "acme")
			r := b.do(t, request{method: http.MethodPost, path: "/v1/invoices/1/pdf", host: tn.host(), bearer: tn.key})
			wantStatus(t, r, http.StatusAccepted)
			get := func() response {
				return b.do(t, request{method: http.MethodGet, path: "/v1/tasks/" + r.json(t)["task_id"].(string), host: tn.host(), bearer: tn.key})
			}
			wantStatus(t, get(), http.StatusOK) // look-ups cached, as in a running service

			entered := g.close()
			answer := make(chan response, 1)
			go func() { answer <- get() }()
			select {
			case <-entered: // authenticated, its look-up waits for Redis
			case <-time.After(time.Minute): // a bound for the failure message
				t.Fatal("the request's look-up never reached Redis")
			}
			if r := c.change(b, tn); r.status >= 300 {
				t.Fatalf("the change: %d %s", r.status, r.body)
			}
			wantStatus(t, get(), c.want) // a new request is refused at once
			g.open()
			select {
			case r := <-answer:
				if r.status != c.want {
					t.Errorf("in-flight task state: status %d, want %d; body %s", r.status, c.want, r.body)
				}
			case <-time.After(time.Minute):
				t.Fatal("in-flight request not answered")
			}
		})
	}
}

// gateHook holds every command (alone or in a pipeline) while closed:
// a Redis that has not answered yet.
type gateHook struct {
	mu      sync.Mutex
	gate    chan struct{} // nil: open
	entered chan struct{} // closed by the first command held
}

// close holds the commands from now on; the channel returned is closed
// once one is held.
func (g *gateHook) close() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate, g.entered = make(chan struct{}), make(chan struct{})
	return g.entered
}

// open lets the held commands, and all later ones, through.
func (g *gateHook) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
}

func (g *gateHook) wait(ctx context.Context) error {
	g.mu.Lock()
	gate, entered := g.gate, g.entered
	if gate != nil {
		select {
		case <-entered:
		default:
			close(entered)
		}
	}
	g.mu.Unlock()
	if gate == nil {
		return nil
	}
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gateHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *gateHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if err := g.wait(ctx); err != nil {
			return err
		}
		return next(ctx, cmd)
	}
}

func (g *gateHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if err := g.wait(ctx); err != nil {
			return err
		}
		return next(ctx, cmds)
	}
}
