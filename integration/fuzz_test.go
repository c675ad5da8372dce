package integration

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// fuzzSuffix is the domain suffix of the in-process handler.
const fuzzSuffix = ".example.test"

// FuzzRequestPath sends arbitrary methods, paths, Host headers, credentials
// and bodies to the enqueue service's handler (in process, wired as
// cmd/enqueue wires it: PostgreSQL catalog behind the Redis cache, real
// Redis, real asynq client) and asserts that no request is answered 500 and
// no handler panics. Two active tenants exist, so inputs that authenticate
// reach the enqueue, task and download handlers.
//
//	go test ./integration -run '^$' -fuzz FuzzRequestPath -fuzztime 60s
func FuzzRequestPath(f *testing.F) {
	ctx := context.Background()
	pool, err := schema.NewPool(ctx, testenv.Postgres(f), schema.PoolOptions{MaxConns: 8})
	if err != nil {
		f.Fatalf("new pool: %v", err)
	}
	f.Cleanup(pool.Close)
	if err := storage.MigrateCatalog(ctx, pool, nil); err != nil {
		f.Fatalf("catalog: %v", err)
	}
	pg := storage.NewPostgres(pool)
	addr := testenv.Redis(f)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	f.Cleanup(func() { _ = rdb.Close() })
	catalog := storage.NewCache(pg, rdb, storage.CacheOptions{})
	f.Cleanup(func() { _ = catalog.Close() })
	docs, err := storage.NewFS(f.TempDir())
	if err != nil {
		f.Fatalf("documents: %v", err)
	}
	redisOpt := asynq.RedisClientOpt{Addr: addr}
	client := asynq.NewClient(redisOpt)
	f.Cleanup(func() { _ = client.Close() })
	inspector := asynq.NewInspector(redisOpt)
	f.Cleanup(func() { _ = inspector.Close() })
	logs := &testenv.LogBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	enqueuer := tasks.NewEnqueuer(client, inspector, logger)
	svc := tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: enqueuer, Documents: docs, SchemaPool: pool, Logger: logger})

	// Two active tenants with schemas, and their keys.
	keys := map[string]string{}
	for _, slug := range []string{"acme", "globex"} {
		res, err := svc.Provision(ctx, tenancy.NewTenant{Slug: slug}, "fuzz")
		if err != nil {
			f.Fatalf("provision %s: %v", slug, err)
		}
		if _, err := schema.Migrate(ctx, pool, res.Tenant.Schema, 0); err != nil {
			f.Fatalf("migrate %s: %v", slug, err)
		}
		if _, err := catalog.SetStatus(ctx, res.Tenant.ID, tenantctx.StatusActive); err != nil {
			f.Fatalf("activate %s: %v", slug, err)
		}
		keys[slug] = res.APIKey
	}
	const admin = "fuzz-admin-token"
	h := httpapi.New(httpapi.Options{
		Catalog: catalog, Tenancy: svc, Documents: docs, Pool: pool, Enqueuer: enqueuer, Redis: rdb,
		RedisConnOpt: redisOpt, DomainSuffix: fuzzSuffix, AdminToken: admin,
		Logger: logger, Registry: prometheus.NewRegistry(),
	})
	f.Cleanup(func() { _ = h.Close() })

	seeds := []struct {
		method, path, host string
		auth               uint8
		body               string
	}{
		{"POST", "/v1/invoices/1/pdf", "acme" + fuzzSuffix, 1, ""},
		{"GET", "/v1/invoices/1/pdf", "acme" + fuzzSuffix, 1, ""},
		{"POST", "/v1/invoices/9223372036854775807/reminders", "globex" + fuzzSuffix, 2, ""},
		{"POST", "/v1/invoices/9223372036854775808/pdf", "acme" + fuzzSuffix, 1, ""},
		{"POST", "/v1/invoices/-1/pdf", "acme" + fuzzSuffix, 1, ""},
		{"POST", "/v1/invoices/1e3/pdf", "acme" + fuzzSuffix, 1, ""},
		{"POST", "/v1/invoices/%2e%2e/pdf", "acme" + fuzzSuffix, 1, ""},
		{"GET", "/v1/tasks/invoice:pdf:x:1", "acme" + fuzzSuffix, 1, ""},
		{"GET", "/v1/tasks/%00", "acme" + fuzzSuffix, 1, ""},
		{"GET", "/v1/tasks/" + strings.Repeat("a", 5000), "acme" + fuzzSuffix, 1, ""},
		{"POST", "/v1/invoices/1/pdf", "acme" + fuzzSuffix, 2, ""},
		{"POST", "/v1/invoices/1/pdf", "acme.example.test.evil.com", 1, ""},
		{"POST", "/v1/invoices/1/pdf", "ACME" + fuzzSuffix + ":8080", 1, ""},
		{"POST", "/v1/invoices/1/pdf", "a'; drop schema tenant_acme; --" + fuzzSuffix, 1, ""},
		{"POST", "/admin/tenants", "", 3, `{"slug":"initech","name":"Initech"}`},
		{"POST", "/admin/tenants", "", 3, `{"slug":"a\"; drop schema x; --"}`},
		{"POST", "/admin/tenants", "", 3, `[{"slug":"x"}]`},
		{"GET", "/admin/tenants?limit=0&after=%27", "", 3, ""},
		{"GET", "/admin/tenants/..%2f..%2fetc", "", 3, ""},
		{"DELETE", "/admin/tenants/tn_nope", "", 3, ""},
		{"POST", "/admin/tenants/tn_nope/suspend", "", 3, ""},
		{"POST", "/admin/migrations", "", 4, ""},
		{"GET", "/admin/dashboard/api/queues", "", 3, ""},
		{"GET", "/admin/dashboard/api/queues/%00/tasks", "", 3, ""},
		{"GET", "/readyz", "", 0, ""},
		{"PATCH", "//v1//invoices/1/pdf", "acme" + fuzzSuffix, 1, ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.host, s.auth, []byte(s.body))
	}

	f.Fuzz(func(t *testing.T, method, path, host string, auth uint8, body []byte) {
		if !validMethod(method) || len(body) > 64<<10 {
			return // net/http never hands such a request to a handler
		}
		u, err := url.ParseRequestURI(path)
		if err != nil || u.Host != "" || u.Scheme != "" {
			return // not a request target a server would route
		}
		logs.Reset() // inputs run one at a time in each fuzz process
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Method = method
		req.URL = u
		req.RequestURI = path
		req.Host = host
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		switch auth % 5 {
		case 1:
			req.Header.Set("Authorization", "Bearer "+keys["acme"])
		case 2:
			req.Header.Set("Authorization", "Bearer "+keys["globex"])
		case 3:
			req.Header.Set("Authorization", "Bearer "+admin)
		case 4:
			req.Header.Set("Authorization", "Bearer "+host)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q Host %q auth %d: status %d, body %s\nlogs:\n%s", method, path, host, auth%5, rec.Code, rec.Body.Bytes(), tail(logs.String(), 4<<10))
		}
		if rec.Code < 100 {
			t.Fatalf("%s %q: impossible status %d", method, path, rec.Code)
		}
		if strings.Contains(logs.String(), "http handler panic") {
			t.Fatalf("%s %q Host %q: a handler panicked:\n%s", method, path, host, tail(logs.String(), 4<<10))
		}
	})
}

// validMethod reports whether m is an HTTP token, as net/http requires of
// a request method.
func validMethod(m string) bool {
	if m == "" || !utf8.ValidString(m) {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}
