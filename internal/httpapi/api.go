package httpapi

import (
	"cmp"
	"log/slog"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/readiness"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// MaxBodyBytes is the largest request body accepted; larger ones get 413.
const MaxBodyBytes = 1 << 20

// DefaultRequestTimeout is Options.RequestTimeout's default.
const DefaultRequestTimeout = 10 * time.Second

// DefaultAdminRequestTimeout is Options.AdminRequestTimeout's default.
const DefaultAdminRequestTimeout = 30 * time.Second

// DashboardPath is where the asynq dashboard is mounted.
const DashboardPath = "/admin/dashboard"

// Options configures New. Catalog, Tenancy and Enqueuer are required; the
// zero value of every other field is documented on it.
type Options struct {
	// Catalog resolves tenants and keys. In production it is the cached
	// catalog (storage.Cache), which also caches unknown slugs briefly.
	Catalog storage.Catalog
	// Tenancy runs every change of the admin routes: provisioning, status
	// changes, keys, deletion, migrations.
	Tenancy *tenancy.Service
	// Documents holds rendered PDFs; nil makes GET /v1/invoices/{id}/pdf
	// answer 404 for every invoice.
	Documents storage.DocumentStore
	// Pool reads invoice documents in the tenant's schema (schema.InTenant)
	// and is pinged by /readyz; nil skips both (PDF downloads answer 404).
	Pool *pgxpool.Pool
	// Pools reaches tenants on every database (package placement); nil
	// serves only tenants on "main", through Pool.
	Pools *placement.Registry
	// Enqueuer enqueues every task and looks up task state.
	Enqueuer *tasks.Enqueuer
	// Redis is pinged by /readyz; nil skips that check.
	Redis redis.UniversalClient
	// RedisConnOpt is the dashboard's connection; nil leaves the dashboard
	// unmounted (404).
	RedisConnOpt asynq.RedisConnOpt
	// DomainSuffix is what follows the tenant label in Host, e.g.
	// ".example.com"; empty means ".localhost".
	DomainSuffix string
	// AdminToken guards the admin routes; empty disables them (404).
	AdminToken string
	// AllowTenantHeader enables the X-Tenant fallback (development only).
	AllowTenantHeader bool
	// DashboardWritable lets operators change tasks and queues from the
	// dashboard (run, delete, pause); the zero value serves it read-only.
	DashboardWritable bool
	// TaskRecords gives the reason a tenant is shown for an archived task
	// (GET /v1/tasks/{id} "last_error"); nil shows a generic one.
	TaskRecords *tasks.TaskRecords
	// KeyUsage is told every API key that authenticated a request, for the
	// keys' last use (storage.KeyUsage batches the writes); nil records
	// nothing.
	KeyUsage KeyUsageRecorder
	// AuthFailuresPerMinute is how many failed authentications (tenant key
	// or admin token) one client address may make per minute, and in a
	// burst, before it is answered 429 with Retry-After without any
	// look-up; 0 means DefaultAuthFailuresPerMinute, negative turns the
	// limit off.
	AuthFailuresPerMinute int
	// ClientIPHeader names a header that a trusted reverse proxy sets to
	// the client's address (e.g. X-Real-IP; for X-Forwarded-For the last
	// address is used; a port after it is ignored); failed
	// authentications are counted per that address. Empty counts per peer address. Set it only behind a proxy
	// that overwrites the header: clients can send anything.
	ClientIPHeader string
	// RequestTimeout bounds a tenant route's work: the tenant and key
	// look-ups, the database (schema.InTenantBatch passes what is left to
	// PostgreSQL as statement_timeout, so a statement waiting for a lock
	// gives up too) and Redis, not the time its body takes to arrive
	// (the server's read timeout bounds that). Past it the request
	// answers 503 with Retry-After, and its connection goes back to the
	// pool (how many one tenant holds meanwhile is TenantDBConns). 0
	// means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// AdminRequestTimeout bounds an admin route's work (every route under
	// /admin but the dashboard, whose asynqmon handlers bound their own):
	// the catalog, the tenant databases and Redis (a Redis client made
	// with ContextTimeoutEnabled stops a stalled read there; otherwise its
	// ReadTimeout does). Past it the route answers 503 with Retry-After
	// and an error that says what was kept (package documentation, "Admin
	// deadline"). 0 means DefaultAdminRequestTimeout.
	AdminRequestTimeout time.Duration
	// TenantDBConns is how many database units of work (invoice checks
	// of enqueues, PDF look-ups) one tenant's requests run at once in
	// this process, each on a connection of the pool; more wait, in
	// order, for one of the tenant's to end (up to RequestTimeout, then
	// 503), never for another tenant's. Keep it well below the pool's
	// size: a tenant whose tables are locked, or that sends thousands of
	// requests at once, then holds at most this many connections and the
	// other tenants are served. 0 means DefaultTenantDBConns, negative
	// turns the bound off.
	TenantDBConns int
	// Logger receives access logs and errors; nil means slog.Default().
	Logger *slog.Logger
	// Registry receives the HTTP metrics; /metrics serves it when it is
	// also a prometheus.Gatherer (a *prometheus.Registry is). Nil means a
	// fresh registry with the Go and process collectors.
	Registry prometheus.Registerer
	// Now returns the current time: the day a reminder is for, and the
	// refill of failed-authentication limits. Nil means time.Now.
	Now func() time.Time
}

// KeyUsageRecorder is told which API key authenticated a request
// (storage.KeyUsage implements it).
type KeyUsageRecorder interface {
	Touch(key string)
}

// Handler is the enqueue service's http.Handler. Close releases the
// dashboard's Redis connections.
type Handler struct {
	opts        Options
	log         *slog.Logger
	root        http.Handler
	metrics     *metrics
	dashboard   *asynqmon.HTTPHandler
	adminHash   [32]byte
	tenantFails *failureLimiter // failed tenant authentications per address
	adminFails  *failureLimiter // failed admin authentications per address
	crossOrigin *http.CrossOriginProtection
	tenantConns *tenantConns // database units of work per tenant
	// pgReady is /readyz's PostgreSQL check, nil without a pool: made
	// once, as its bound of one connection outside a busy pool holds per
	// check, not per request.
	pgReady readiness.Check
}

// New returns the enqueue service's handler with every route of the package
// documentation mounted. It panics when a required option is missing or the
// metrics cannot be registered: both are programming errors at start-up.
func New(opts Options) *Handler {
	if opts.Catalog == nil || opts.Tenancy == nil || opts.Enqueuer == nil {
		panic("httpapi.New: Catalog, Tenancy and Enqueuer are required")
	}
	opts.DomainSuffix = cmp.Or(opts.DomainSuffix, ".localhost")
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.RequestTimeout = cmp.Or(opts.RequestTimeout, DefaultRequestTimeout)
	opts.AdminRequestTimeout = cmp.Or(opts.AdminRequestTimeout, DefaultAdminRequestTimeout)
	h := &Handler{opts: opts, log: opts.Logger}
	if opts.AdminToken != "" {
		h.adminHash = digest(opts.AdminToken)
	}
	h.tenantFails = newFailureLimiter(opts.AuthFailuresPerMinute, opts.Now)
	h.adminFails = newFailureLimiter(opts.AuthFailuresPerMinute, opts.Now)
	h.crossOrigin = newCrossOriginProtection()
	h.tenantConns = newTenantConns(opts.TenantDBConns)
	if opts.Pool != nil {
		h.pgReady = readiness.Postgres(opts.Pool)
	}
	var gatherer prometheus.Gatherer
	if opts.Registry == nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		opts.Registry, gatherer = reg, reg
	} else if g, ok := opts.Registry.(prometheus.Gatherer); ok {
		gatherer = g
	} else {
		gatherer = prometheus.DefaultGatherer
	}
	var late lateEnqueues
	if opts.Enqueuer != nil {
		late = opts.Enqueuer
	}
	h.metrics = newMetrics(opts.Registry, late)

	mux := http.NewServeMux()
	// Every route that changes something (POST, PUT, DELETE) takes no
	// query parameter: noQuery answers 400 for one, once the caller is
	// authenticated and before the route runs.
	route := func(pattern string, fn http.Handler) { mux.Handle(pattern, named(pattern, fn)) }

	// Tenant routes.
	route("POST /v1/invoices/{id}/pdf", h.tenant(noQuery(http.HandlerFunc(h.enqueuePDF))))
	route("POST /v1/invoices/pdf", h.tenant(noQuery(http.HandlerFunc(h.enqueuePDFs))))
	route("POST /v1/invoices/{id}/reminders", h.tenant(noQuery(http.HandlerFunc(h.enqueueReminder))))
	route("GET /v1/invoices/{id}/pdf", h.tenant(http.HandlerFunc(h.downloadPDF)))
	route("GET /v1/tasks/{task_id}", h.tenant(http.HandlerFunc(h.taskState)))

	// Admin routes.
	route("POST /admin/tenants", h.admin(noQuery(http.HandlerFunc(h.createTenant))))
	route("GET /admin/tenants", h.admin(http.HandlerFunc(h.listTenants)))
	route("GET /admin/tenants/{id}", h.admin(http.HandlerFunc(h.getTenant)))
	route("POST /admin/tenants/{id}/suspend", h.admin(noQuery(http.HandlerFunc(h.suspendTenant))))
	route("POST /admin/tenants/{id}/resume", h.admin(noQuery(http.HandlerFunc(h.resumeTenant))))
	route("GET /admin/tenants/{id}/keys", h.admin(http.HandlerFunc(h.listKeys)))
	route("POST /admin/tenants/{id}/keys", h.admin(noQuery(http.HandlerFunc(h.createKey))))
	route("DELETE /admin/tenants/{id}/keys/{key_id}", h.admin(noQuery(http.HandlerFunc(h.revokeKey))))
	route("DELETE /admin/tenants/{id}", h.admin(noQuery(http.HandlerFunc(h.deleteTenant))))
	route("PUT /admin/tenants/{id}/limits", h.admin(noQuery(http.HandlerFunc(h.setLimits))))
	route("PUT /admin/tenants/{id}/time_zone", h.admin(noQuery(http.HandlerFunc(h.setTimeZone))))
	route("GET /admin/queues", h.admin(http.HandlerFunc(h.queues)))
	route("GET /admin/tenants/{id}/queue", h.admin(http.HandlerFunc(h.tenantQueue)))
	route("POST /admin/tenants/{id}/queue/pause", h.admin(noQuery(http.HandlerFunc(h.pauseQueue))))
	route("POST /admin/tenants/{id}/queue/resume", h.admin(noQuery(http.HandlerFunc(h.resumeQueue))))
	route("POST /admin/tenants/{id}/queue/drain", h.admin(noQuery(http.HandlerFunc(h.drainQueue))))
	route("POST /admin/migrations", h.admin(noQuery(http.HandlerFunc(h.migrateAll))))
	if opts.RedisConnOpt != nil {
		h.dashboard = asynqmon.New(asynqmon.Options{
			RootPath:     DashboardPath,
			RedisConnOpt: opts.RedisConnOpt,
			ReadOnly:     !opts.DashboardWritable,
		})
		route(DashboardPath+"/", h.dashboardAuth(dashboardRedisInfo(h.dashboard, opts.RedisConnOpt)))
	}

	// Operations.
	route("GET /healthz", http.HandlerFunc(h.healthz))
	route("GET /readyz", http.HandlerFunc(h.readyz))
	route("GET /metrics", metricsHandler(gatherer))

	h.opts = opts
	h.root = closeOnUnreadBody(h.observe(h.adminSubtree(limitBody(jsonMuxErrors(mux)))))
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.root.ServeHTTP(w, r) }

// Close releases the dashboard's Redis connections. The handler must not
// serve requests afterwards.
func (h *Handler) Close() error {
	if h.dashboard != nil {
		return h.dashboard.Close()
	}
	return nil
}
