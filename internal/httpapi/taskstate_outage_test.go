package httpapi_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
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
			srv := testenv.StartRedis(t, testenv.RedisOptions{})
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: -1})
			t.Cleanup(func() { _ = rdb.Close() })
			b := setupOn(t, srv.Addr(), nil, func(o *httpapi.Options) {
				o.RequestTimeout = 3 * time.Second
				o.Catalog = &stickyCatalog{Catalog: o.Catalog, owners: map[string]string{}, slugs: map[string]tenantctx.Tenant{}}
				var admission []tasks.Option
				if withFair {
					d := fair.New(rdb, fair.Config{MinPending: 1})
					admission = append(admission, tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: o.Catalog}))
				}
				o.Enqueuer = tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb),
					slog.New(slog.DiscardHandler), admission...)
			})
			acme := b.active(t, "acme")
			r := b.do(t, request{method: http.MethodPost, path: "/v1/invoices/1/pdf", host: acme.host(), bearer: acme.key})
			wantStatus(t, r, http.StatusAccepted)
			get := request{method: http.MethodGet, path: "/v1/tasks/" + r.json(t)["task_id"].(string), host: acme.host(), bearer: acme.key}
			wantStatus(t, b.do(t, get), http.StatusOK)

			resume := testenv.StopRedis(t, rdb)
			// A PING of its own: answered once the server runs again.
			conn, err := net.Dial("tcp", srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			if _, err := conn.Write([]byte("PING\r\n")); err != nil {
				t.Fatal(err)
			}
			pong := make(chan struct{})
			go func() {
				defer close(pong)
				_, _ = bufio.NewReader(conn).ReadString('\n')
			}()

			req, err := http.NewRequest(http.MethodGet, b.srv.URL+get.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = get.host
			req.Header.Set("Authorization", "Bearer "+get.bearer)
			type answer struct {
				resp *http.Response
				err  error
			}
			answered := make(chan answer, 1)
			go func() {
				resp, err := b.srv.Client().Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
				answered <- answer{resp, err}
			}()
			var a answer
			select {
			case a = <-answered:
			case <-time.After(time.Minute): // a bound for the failure message, not a measurement
				t.Fatal("GET of a task still waiting for Redis a minute after its 3 s deadline")
			}
			if a.err != nil {
				t.Fatal(a.err)
			}
			select {
			case <-pong:
				t.Fatal("Redis answered before the request did: it was not stopped")
			default:
			}
			if a.resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("GET of a task while Redis answers nothing: %d, want 503", a.resp.StatusCode)
			}
			if s, err := strconv.Atoi(a.resp.Header.Get("Retry-After")); err != nil || s < 1 {
				t.Fatalf("Retry-After %q", a.resp.Header.Get("Retry-After"))
			}
			resume()
			<-pong
		})
	}
}
