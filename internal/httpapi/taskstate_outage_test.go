package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// stickyCatalog answers the tenant routes' key and slug look-ups from its
// first answers, so that a request reaches its route without the cache's
// Redis layer.
type stickyCatalog struct {
	storage.Catalog
	mu     sync.Mutex
	owners map[string]string
	slugs  map[string]tenantctx.Tenant
}

func (c *stickyCatalog) TenantForAPIKey(ctx context.Context, key string) (string, error) {
	c.mu.Lock()
	owner, ok := c.owners[key]
	c.mu.Unlock()
	if ok {
		return owner, nil
	}
	owner, err := c.Catalog.TenantForAPIKey(ctx, key)
	if err == nil {
		c.mu.Lock()
		c.owners[key] = owner
		c.mu.Unlock()
	}
	return owner, err
}

func (c *stickyCatalog) TenantBySlug(ctx context.Context, slug string) (tenantctx.Tenant, error) {
	c.mu.Lock()
	t, ok := c.slugs[slug]
	c.mu.Unlock()
	if ok {
		return t, nil
	}
	t, err := c.Catalog.TenantBySlug(ctx, slug)
	if err == nil {
		c.mu.Lock()
		c.slugs[slug] = t
		c.mu.Unlock()
	}
	return t, err
}

// stopRedis stops the redis-server rdb talks to (SIGSTOP) and sends it a
// PING of its own, answered once it runs again: answered reports whether
// it has been, so a test can check that Redis was still stopped when its
// request was answered. resume lets it run again and waits for the PONG.
func stopRedis(t *testing.T, rdb redis.UniversalClient, addr string) (answered func() bool, resume func()) {
	t.Helper()
	cont := testenv.StopRedis(t, rdb)
	pong := testenv.Pinged(t, addr)
	answered = func() bool {
		select {
		case <-pong:
			return true
		default:
			return false
		}
	}
	return answered, func() { cont(); <-pong }
}

// wantUnavailable checks that r is 503 with a usable Retry-After.
func wantUnavailable(t *testing.T, r response) {
	t.Helper()
	wantStatus(t, r, http.StatusServiceUnavailable)
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
}

// setupStalling is setupOn over its own redis-server, with an enqueuer
// whose Redis client has no read timeout of its own (so only a request's
// context can end a call to a stopped Redis), fair dispatch or not, and a
// catalog that keeps answering once it has answered. It returns the
// bundle, the server, the enqueuer's client and the enqueuer.
func setupStalling(t *testing.T, withFair bool, logs io.Writer) (*bundle, *testenv.RedisServer, *redis.Client, *tasks.Enqueuer) {
	t.Helper()
	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	var enq *tasks.Enqueuer
	b := setupOn(t, srv.Addr(), nil, func(o *httpapi.Options) {
		o.RequestTimeout = 3 * time.Second
		o.Catalog = &stickyCatalog{Catalog: o.Catalog, owners: map[string]string{}, slugs: map[string]tenantctx.Tenant{}}
		var admission []tasks.Option
		if withFair {
			d := fair.New(rdb, fair.Config{MinPending: 1})
			admission = append(admission, tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: o.Catalog}))
		}
		enq = tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb),
			slog.New(slog.NewTextHandler(logs, nil)), admission...)
		o.Enqueuer = enq
	})
	return b, srv, rdb, enq
}

// TestTaskStateWhileRedisAnswersNothing: GET /v1/tasks/{id} while Redis
// answers nothing (its process stopped) ends at the request's deadline
// (RequestTimeout) with 503 and Retry-After, while Redis is still stopped,
// with fair dispatch and without. The enqueuer's Redis client here has no
// read timeout of its own, so only the request's context can end the
// look-up (asynq's inspector takes none).
func TestTaskStateWhileRedisAnswersNothing(t *testing.T) {
	t.Parallel()
	for _, withFair := range []bool{false, true} {
		t.Run("fair="+strconv.FormatBool(withFair), func(t *testing.T) {
			t.Parallel()
			b, srv, rdb, _ := setupStalling(t, withFair, io.Discard)
			acme := b.active(t, "acme")
			r := b.do(t, request{method: http.MethodPost, path: "/v1/invoices/1/pdf", host: acme.host(), bearer: acme.key})
			wantStatus(t, r, http.StatusAccepted)
			get := request{method: http.MethodGet, path: "/v1/tasks/" + r.json(t)["task_id"].(string), host: acme.host(), bearer: acme.key}
			wantStatus(t, b.do(t, get), http.StatusOK)

			answered, resume := stopRedis(t, rdb, srv.Addr())
			r = b.doWithin(t, get)
			if answered() {
				t.Fatal("Redis answered before the request did: it was not stopped")
			}
			wantUnavailable(t, r)
			resume()
		})
	}
}

// TestEnqueueWhileRedisAnswersNothing: an enqueue (POST one PDF, and the
// bulk POST) while Redis answers nothing ends at the request's deadline
// with 503 and Retry-After, while Redis is still stopped, with fair
// dispatch and without. The enqueue itself goes on and is applied once
// Redis answers (logged, since its caller is gone), and Enqueuer.Wait
// waits for it: the client's retry then finds the same tasks (existing),
// so nothing is lost or enqueued twice.
func TestEnqueueWhileRedisAnswersNothing(t *testing.T) {
	t.Parallel()
	for _, withFair := range []bool{false, true} {
		t.Run("fair="+strconv.FormatBool(withFair), func(t *testing.T) {
			t.Parallel()
			logs := &testenv.LogBuffer{}
			b, srv, rdb, enq := setupStalling(t, withFair, logs)
			acme := b.active(t, "acme")
			// The tenant's look-ups answered once (the catalog keeps them).
			wantStatus(t, b.do(t, request{method: http.MethodPost, path: "/v1/invoices/1/pdf", host: acme.host(), bearer: acme.key}), http.StatusAccepted)

			one := func() request {
				return request{method: http.MethodPost, path: "/v1/invoices/2/pdf", host: acme.host(), bearer: acme.key}
			}
			bulk := func() request {
				return request{method: http.MethodPost, path: "/v1/invoices/pdf", host: acme.host(), bearer: acme.key,
					body: strings.NewReader(`{"invoice_ids":[3,4]}`)}
			}
			answered, resume := stopRedis(t, rdb, srv.Addr())
			r1, r2 := b.doWithin(t, one()), b.doWithin(t, bulk())
			if answered() {
				t.Fatal("Redis answered before the requests did: it was not stopped")
			}
			wantUnavailable(t, r1)
			wantUnavailable(t, r2)
			resume()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := enq.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			// Applied after their callers gave up: the retries find them.
			r := b.do(t, one())
			wantStatus(t, r, http.StatusAccepted)
			if r.json(t)["existing"] != true {
				t.Fatalf("retry of the enqueue cut at its deadline: %s, want the task it enqueued after all", r.body)
			}
			r = b.do(t, bulk())
			wantStatus(t, r, http.StatusAccepted)
			var out struct {
				Tasks []struct {
					Existing bool `json:"existing"`
				} `json:"tasks"`
			}
			if err := json.Unmarshal(r.body, &out); err != nil || len(out.Tasks) != 2 || !out.Tasks[0].Existing || !out.Tasks[1].Existing {
				t.Fatalf("retry of the bulk enqueue cut at its deadline: %s, want both tasks existing", r.body)
			}
			if n := strings.Count(logs.String(), "enqueue ended after its caller gave up: applied"); n != 3 {
				t.Fatalf("%d log lines of enqueues applied after their callers gave up, want 3 (one task, then two):\n%s", n, logs)
			}
			// Two calls (one Enqueue, one EnqueueMany) ended after their requests.
			m := b.do(t, request{method: http.MethodGet, path: "/metrics"})
			for _, want := range []string{`enqueue_enqueues_after_deadline_total{outcome="applied"} 2`, `enqueue_enqueues_after_deadline_total{outcome="failed"} 0`} {
				if !strings.Contains(string(m.body), want) {
					t.Fatalf("metrics lack %q:\n%s", want, m.body)
				}
			}
		})
	}
}
