package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, request{method: http.MethodGet, path: "/healthz"})
	wantStatus(t, r, http.StatusOK)
	r = b.do(t, request{method: http.MethodGet, path: "/readyz"})
	wantStatus(t, r, http.StatusOK)
	if checks, _ := r.json(t)["checks"].(map[string]any); checks["redis"] != "ok" || checks["postgres"] != "ok" {
		t.Fatalf("readyz %s", r.body)
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func TestReadinessNamesFailingDependency(t *testing.T) {
	t.Parallel()
	deadRedis := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1})
	t.Cleanup(func() { _ = deadRedis.Close() })
	b := setup(t, func(o *httpapi.Options) { o.Redis = deadRedis })
	r := b.do(t, request{method: http.MethodGet, path: "/readyz"})
	wantStatus(t, r, http.StatusServiceUnavailable)
	if got := r.errorText(t); got != "not ready: redis" {
		t.Fatalf("error %q", got)
	}

	deadPG, err := pgxpool.New(context.Background(), "postgres://postgres@"+closedAddr(t)+"/x?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(deadPG.Close)
	b2 := setup(t, func(o *httpapi.Options) { o.Pool = deadPG; o.Redis = deadRedis })
	r = b2.do(t, request{method: http.MethodGet, path: "/readyz"})
	wantStatus(t, r, http.StatusServiceUnavailable)
	if got := r.errorText(t); got != "not ready: postgres, redis" {
		t.Fatalf("error %q", got)
	}
	// Liveness does not depend on them.
	wantStatus(t, b2.do(t, request{method: http.MethodGet, path: "/healthz"}), http.StatusOK)
}

// TestReadinessHidesErrors: the unauthenticated /readyz names a failing
// dependency but not its error (hosts, ports, users, databases); the
// error goes to the log.
func TestReadinessHidesErrors(t *testing.T) {
	t.Parallel()
	deadAddr := closedAddr(t)
	deadRedis := redis.NewClient(&redis.Options{Addr: deadAddr, MaxRetries: -1})
	t.Cleanup(func() { _ = deadRedis.Close() })
	deadPG, err := pgxpool.New(context.Background(), "postgres://billing_app@"+closedAddr(t)+"/invoicing_prod?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(deadPG.Close)
	b := setup(t, func(o *httpapi.Options) { o.Pool = deadPG; o.Redis = deadRedis })
	r := b.do(t, request{method: http.MethodGet, path: "/readyz"})
	wantStatus(t, r, http.StatusServiceUnavailable)
	checks, _ := r.json(t)["checks"].(map[string]any)
	if checks["redis"] != "unavailable" || checks["postgres"] != "unavailable" {
		t.Errorf("checks %v", checks)
	}
	for _, secret := range []string{deadAddr, "127.0.0.1", "billing_app", "invoicing_prod", "dial", "connect"} {
		if strings.Contains(string(r.body), secret) {
			t.Errorf("/readyz shows %q: %s", secret, r.body)
		}
	}
	if logs := b.logs.String(); !strings.Contains(logs, "readiness check failed") || !strings.Contains(logs, deadAddr) {
		t.Errorf("the errors are not logged:\n%s", logs)
	}
}

func TestMuxErrorsAreJSON(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, request{method: http.MethodGet, path: "/nope"})
	wantStatus(t, r, http.StatusNotFound)
	if got := r.errorText(t); got != "not found" {
		t.Fatalf("error %q", got)
	}
	r = b.do(t, request{method: http.MethodPut, path: "/v1/invoices/1/pdf"})
	wantStatus(t, r, http.StatusMethodNotAllowed)
	if got := r.errorText(t); got != "method not allowed" {
		t.Fatalf("error %q", got)
	}
	if allow := r.header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "POST") {
		t.Fatalf("Allow %q", allow)
	}
	r = b.do(t, request{method: http.MethodGet, path: "/admin/migrations", bearer: adminToken})
	wantStatus(t, r, http.StatusMethodNotAllowed)
	_ = r.errorText(t)
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	get := func(id string) string {
		h := http.Header{}
		if id != "" {
			h.Set("X-Request-Id", id)
		}
		r := b.do(t, request{method: http.MethodGet, path: "/healthz", header: h})
		return r.header.Get("X-Request-Id")
	}
	if got := get("abc-123.x:y_z"); got != "abc-123.x:y_z" {
		t.Fatalf("sane id replaced by %q", got)
	}
	for _, bad := range []string{"", "has space", strings.Repeat("a", 65), "quote\"", "ünï"} {
		got := get(bad)
		if got == bad || len(got) != 32 {
			t.Fatalf("id %q answered with %q, want a generated one", bad, got)
		}
	}
	if first, second := get(""), get(""); first == second {
		t.Fatal("generated ids repeat")
	}
}

func TestAccessLogAndMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	r := b.do(t, request{method: http.MethodPost, host: acme.host(), path: "/v1/invoices/37/pdf", bearer: acme.key,
		header: http.Header{"X-Request-Id": {"req-77"}}})
	wantStatus(t, r, http.StatusAccepted)
	wantStatus(t, b.do(t, request{method: http.MethodPost, host: acme.host(), path: "/v1/invoices/x/pdf", bearer: acme.key}), http.StatusBadRequest)
	wantStatus(t, b.do(t, request{method: http.MethodGet, path: "/nope"}), http.StatusNotFound)

	var line map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.logs.String()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "http request" && m["request_id"] == "req-77" {
			line = m
		}
	}
	if line == nil {
		t.Fatalf("no access log line for req-77 in:\n%s", b.logs.String())
	}
	for k, want := range map[string]any{
		"method": "POST", "route": "POST /v1/invoices/{id}/pdf", "status": float64(202), "tenant_id": acme.ID,
	} {
		if line[k] != want {
			t.Errorf("log %s = %v, want %v", k, line[k], want)
		}
	}
	if _, ok := line["duration"]; !ok {
		t.Error("log line has no duration")
	}

	r = b.do(t, request{method: http.MethodGet, path: "/metrics"})
	wantStatus(t, r, http.StatusOK)
	text := string(r.body)
	for _, want := range []string{
		`enqueue_http_requests_total{route="POST /v1/invoices/{id}/pdf",status="202"} 1`,
		`enqueue_http_requests_total{route="POST /v1/invoices/{id}/pdf",status="400"} 1`,
		`enqueue_http_requests_total{route="unmatched",status="404"} 1`,
		`enqueue_http_request_duration_seconds_count{route="POST /v1/invoices/{id}/pdf"} 2`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(text, acme.ID) || strings.Contains(text, "tenant") {
		t.Error("metrics carry tenant labels")
	}
}

// panicCatalog panics on every slug look-up.
type panicCatalog struct{ storage.Catalog }

func (panicCatalog) TenantBySlug(context.Context, string) (tenantctx.Tenant, error) {
	panic("catalog exploded")
}

func TestPanicRecovery(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *httpapi.Options) { o.Catalog = panicCatalog{o.Catalog} })
	acme := b.provisioned(t, "acme") // its key is looked up first, then the slug
	r := b.do(t, request{method: http.MethodPost, host: acme.host(), path: "/v1/invoices/1/pdf", bearer: acme.key})
	wantStatus(t, r, http.StatusInternalServerError)
	if got := r.errorText(t); got != "internal error" {
		t.Fatalf("error %q", got)
	}
	if logs := b.logs.String(); !strings.Contains(logs, "catalog exploded") || !strings.Contains(logs, "http handler panic") {
		t.Fatalf("panic not logged:\n%s", logs)
	}
	// The server still serves.
	wantStatus(t, b.do(t, request{method: http.MethodGet, path: "/healthz"}), http.StatusOK)
}

type abortCatalog struct{ storage.Catalog }

func (abortCatalog) TenantBySlug(context.Context, string) (tenantctx.Tenant, error) {
	panic(http.ErrAbortHandler)
}

// TestAbortedRequestIsLogged: a handler that aborts its answer
// (http.ErrAbortHandler: net/http drops the connection without logging)
// still gets its access log line: every request is logged once.
func TestAbortedRequestIsLogged(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *httpapi.Options) { o.Catalog = abortCatalog{o.Catalog} })
	acme := b.provisioned(t, "acme")
	b.logs.Reset()
	if _, err := b.try(request{method: http.MethodPost, host: acme.host(), path: "/v1/invoices/1/pdf", bearer: acme.key}); err == nil {
		t.Fatal("the aborted request got an answer")
	}
	if logs := b.logs.String(); strings.Count(logs, "http request") != 1 || !strings.Contains(logs, "/v1/invoices/{id}/pdf") {
		t.Fatalf("aborted request: want one access log line naming its route:\n%s", logs)
	}
	wantStatus(t, b.do(t, request{method: http.MethodGet, path: "/healthz"}), http.StatusOK)
}
