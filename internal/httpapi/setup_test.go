package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/internal/logctx"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

const (
	suffix     = ".example.com"
	adminToken = "s3cret-admin-token"
)

// bundle is one test's service: real PostgreSQL and Redis, the Postgres
// catalog behind the Redis cache, a document store, the handler and an
// httptest server with a real listener.
type bundle struct {
	pool      *pgxpool.Pool
	pg        *storage.Postgres
	catalog   *storage.Cache
	docs      *storage.FS
	rdb       *redis.Client
	redisOpt  asynq.RedisClientOpt
	inspector *asynq.Inspector
	enqueuer  *tasks.Enqueuer
	// dispatcher is set by setupFair.
	dispatcher *fair.Dispatcher
	records    *tasks.TaskRecords
	tenancy    *tenancy.Service
	handler    *httpapi.Handler
	srv        *httptest.Server
	logs       *testenv.LogBuffer
	registry   *prometheus.Registry
	now        time.Time
}

// setup starts a bundle; mutate adjusts the handler's options.
func setup(t testing.TB, mutate ...func(*httpapi.Options)) *bundle {
	t.Helper()
	return setupWith(t, nil, mutate...)
}

// setupFair starts a bundle whose enqueuer and lifecycle use fair dispatch
// (no worker: at most one task per queue is admitted, the rest waits).
func setupFair(t testing.TB, mutate ...func(*httpapi.Options)) *bundle {
	t.Helper()
	return setupWith(t, &fair.Config{MinPending: 1}, mutate...)
}

// setupFairConfig is setupFair with the dispatcher configured by cfg.
func setupFairConfig(t testing.TB, cfg fair.Config, mutate ...func(*httpapi.Options)) *bundle {
	t.Helper()
	return setupWith(t, &cfg, mutate...)
}

// setupWith starts a bundle, with fair dispatch configured by fairCfg
// unless it is nil.
func setupWith(t testing.TB, fairCfg *fair.Config, mutate ...func(*httpapi.Options)) *bundle {
	t.Helper()
	return setupOn(t, testenv.Redis(t), fairCfg, mutate...)
}

// setupOn is setupWith on the Redis at addr (a test's own redis-server,
// which it may stop).
func setupOn(t testing.TB, addr string, fairCfg *fair.Config, mutate ...func(*httpapi.Options)) *bundle {
	t.Helper()
	return setupOnDB(t, testenv.Postgres(t), addr, fairCfg, mutate...)
}

// setupOnDB is setupOn with the catalog and the tenant schemas in the
// database at databaseURL (a test's own PostgreSQL, which it may stop).
func setupOnDB(t testing.TB, databaseURL, addr string, fairCfg *fair.Config, mutate ...func(*httpapi.Options)) *bundle {
	t.Helper()
	ctx := context.Background()
	b := &bundle{logs: &testenv.LogBuffer{}, now: time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)}

	pool, err := schema.NewPool(ctx, databaseURL, schema.PoolOptions{MaxConns: 16})
	if err != nil {
		t.Fatalf("new pool: %v", err)
	}
	t.Cleanup(pool.Close)
	b.pool = pool
	if err := storage.MigrateCatalog(ctx, pool, nil); err != nil {
		t.Fatalf("migrate catalog: %v", err)
	}
	b.pg = storage.NewPostgres(pool)

	b.redisOpt = asynq.RedisClientOpt{Addr: addr}
	b.rdb = redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = b.rdb.Close() })
	// Negative entries live for the whole test (the default is 5 s): a
	// test that counts catalog queries must not see one expire because a
	// slow machine took seconds over its requests. Writes through the
	// cache still drop them at once.
	b.catalog = storage.NewCache(b.pg, b.rdb, storage.CacheOptions{KeyPrefix: "test:", NegativeTTL: time.Hour})
	t.Cleanup(func() { _ = b.catalog.Close() })

	if b.docs, err = storage.NewFS(t.TempDir()); err != nil {
		t.Fatalf("new fs: %v", err)
	}
	client := asynq.NewClient(b.redisOpt)
	t.Cleanup(func() { _ = client.Close() })
	b.inspector = asynq.NewInspector(b.redisOpt)
	t.Cleanup(func() { _ = b.inspector.Close() })
	// As config.NewLogger builds the binaries' loggers: what a request's
	// ctx carries (logctx) goes on the lines logged with it.
	logger := slog.New(logctx.Handler(slog.NewJSONHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	b.records = tasks.NewTaskRecords(b.rdb, tasks.TaskRecordsOptions{KeyPrefix: "test:records:"})
	// As backend.Open builds it: with the Redis client.
	admission := []tasks.Option{tasks.WithRedis(b.rdb)}
	if fairCfg != nil {
		b.dispatcher = fair.New(b.rdb, *fairCfg)
		admission = append(admission, tasks.WithAdmission(tasks.Admission{Dispatcher: b.dispatcher, Tenants: b.catalog}))
	}
	b.enqueuer = tasks.NewEnqueuer(client, b.inspector, logger, admission...).WithTaskRecords(b.records)
	b.tenancy = tenancy.New(tenancy.Config{Catalog: b.catalog, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: pool, Logger: logger,
		Dispatcher: b.dispatcher, Plans: fair.DefaultPlans()})
	b.registry = prometheus.NewRegistry()

	opts := httpapi.Options{
		Catalog:      b.catalog,
		Tenancy:      b.tenancy,
		Documents:    b.docs,
		Pool:         pool,
		Enqueuer:     b.enqueuer,
		Redis:        b.rdb,
		RedisConnOpt: b.redisOpt,
		DomainSuffix: suffix,
		AdminToken:   adminToken,
		TaskRecords:  b.records,
		Logger:       logger,
		Registry:     b.registry,
		Now:          func() time.Time { return b.now },
		// Tests send many bad credentials on purpose; the limit has its
		// own tests (ratelimit_test.go).
		AuthFailuresPerMinute: -1,
	}
	for _, m := range mutate {
		m(&opts)
	}
	b.handler = httpapi.New(opts)
	t.Cleanup(func() { _ = b.handler.Close() })
	b.srv = httptest.NewServer(b.handler)
	t.Cleanup(b.srv.Close)
	return b
}

// tenant is a provisioned tenant and its key.
type tenant struct {
	tenantctx.Tenant
	key string
}

// host is the tenant's Host header.
func (tn tenant) host() string { return tn.Slug + suffix }

// provisioned provisions slug through tenancy.Service.Provision, leaving it
// in provisioning.
func (b *bundle) provisioned(t testing.TB, slug string) tenant {
	t.Helper()
	res, err := b.tenancy.Provision(context.Background(), tenancy.NewTenant{Slug: slug}, "test")
	if err != nil {
		t.Fatalf("provision %s: %v", slug, err)
	}
	return tenant{Tenant: res.Tenant, key: res.APIKey}
}

// activeInvoices is how many invoices (ids 1..activeInvoices) every tenant
// made by active has: the API enqueues work only for invoices that exist.
const activeInvoices = 50

// active provisions slug, migrates its schema (what tenant:migrate does),
// gives it invoices 1..activeInvoices and activates it.
func (b *bundle) active(t testing.TB, slug string) tenant {
	t.Helper()
	ctx := context.Background()
	tn := b.provisioned(t, slug)
	if _, err := schema.Migrate(ctx, b.pool, tn.Schema, 0); err != nil {
		t.Fatalf("migrate %s: %v", tn.Schema, err)
	}
	invs := make([]invoice.New, activeInvoices)
	for i := range invs {
		invs[i] = invoice.New{Number: fmt.Sprintf("%s-%04d", strings.ToUpper(slug), i+1), Status: "sent",
			Customer: invoice.Customer{Name: "Customer", Email: fmt.Sprintf("c%d@%s.example", i, slug)}}
	}
	err := schema.InTenant(tenantctx.WithTenant(ctx, tn.Tenant), b.pool, func(ctx context.Context, tx pgx.Tx) error {
		_, err := invoice.Create(ctx, tx, invs...)
		return err
	})
	if err != nil {
		t.Fatalf("invoices of %s: %v", slug, err)
	}
	tt, err := b.catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive)
	if err != nil {
		t.Fatalf("activate %s: %v", slug, err)
	}
	tn.Tenant = tt
	return tn
}

// request is one HTTP call against the bundle's server.
type request struct {
	method, path, host string
	// auth is the Authorization header; bearer sets "Bearer <bearer>".
	auth, bearer string
	body         io.Reader
	header       http.Header
}

// response is a finished call.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a map.
func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode %d body %q: %v", r.status, r.body, err)
	}
	return m
}

// errorText returns the "error" of a JSON error body, failing when the
// body is not one.
func (r response) errorText(t testing.TB) string {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error content type %q, body %q", ct, r.body)
	}
	s, ok := r.json(t)["error"].(string)
	if !ok || s == "" {
		t.Fatalf("no error text in %q", r.body)
	}
	return s
}

func (b *bundle) do(t testing.TB, rq request) response {
	t.Helper()
	r, err := b.try(rq)
	if err != nil {
		t.Fatalf("%s %s: %v", rq.method, rq.path, err)
	}
	return r
}

// doWithin is do for a request that might hang: past a minute (a bound
// for the failure message, not a measurement) the test fails.
func (b *bundle) doWithin(t testing.TB, rq request) response {
	t.Helper()
	type answer struct {
		r   response
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		r, err := b.try(rq)
		answered <- answer{r, err}
	}()
	select {
	case a := <-answered:
		if a.err != nil {
			t.Fatalf("%s %s: %v", rq.method, rq.path, a.err)
		}
		return a.r
	case <-time.After(time.Minute):
		t.Fatalf("%s %s: no answer in a minute", rq.method, rq.path)
		return response{}
	}
}

// try sends rq and reads the whole answer.
func (b *bundle) try(rq request) (response, error) {
	req, err := http.NewRequest(rq.method, b.srv.URL+rq.path, rq.body)
	if err != nil {
		return response{}, err
	}
	if rq.host != "" {
		req.Host = rq.host
	}
	for k, vs := range rq.header {
		req.Header[k] = vs
	}
	if rq.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+rq.bearer)
	}
	if rq.auth != "" {
		req.Header.Set("Authorization", rq.auth)
	}
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("read body: %w", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// serve calls the handler directly, for Host values an HTTP client refuses
// to send.
func (b *bundle) serve(t testing.TB, method, host, path, bearer string) response {
	t.Helper()
	req := httptest.NewRequest(method, "http://placeholder"+path, nil)
	req.Host = host
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	rec := httptest.NewRecorder()
	b.handler.ServeHTTP(rec, req)
	return response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// admin calls an admin route with the right token.
func (b *bundle) admin(t testing.TB, method, path, body string) response {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	return b.do(t, request{method: method, path: path, bearer: adminToken, body: r})
}

// wantStatus fails unless r has the status.
func wantStatus(t testing.TB, r response, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d; body %s", r.status, want, r.body)
	}
}

// taskInfo looks a task up in a queue, failing when it is not there.
func (b *bundle) taskInfo(t testing.TB, queue, id string) *asynq.TaskInfo {
	t.Helper()
	ti, err := b.inspector.GetTaskInfo(queue, id)
	if err != nil {
		t.Fatalf("task %s in queue %s: %v", id, queue, err)
	}
	return ti
}

// payloadTenant returns the tenant_id of a task payload.
func payloadTenant(t testing.TB, ti *asynq.TaskInfo) string {
	t.Helper()
	var p struct {
		TenantID string `json:"tenant_id"`
	}
	if err := json.Unmarshal(ti.Payload, &p); err != nil {
		t.Fatalf("decode payload %q: %v", ti.Payload, err)
	}
	return p.TenantID
}

// decode unmarshals body into v.
func decode(t testing.TB, body []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
}
