// Package config loads the configuration of both binaries (cmd/worker and
// cmd/enqueue) from environment variables (the README's configuration
// table). Every field documents its variable and zero value. Parse reads
// the environment; a binary then applies its flag overrides to the Config
// and calls Resolve once, which applies the defaults and validates, so a
// default that depends on another field (DB_MAX_CONNS on
// WORKER_CONCURRENCY) follows the flag too. Every error names the variable
// at fault. FromEnv is Parse then Resolve, for callers without flags.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// Defaults.
const (
	DefaultRedisURL          = "redis://127.0.0.1:6379"
	DefaultDomainSuffix      = ".localhost"
	DefaultWorkerHTTPAddr    = ":9090"
	DefaultEnqueueHTTPAddr   = ":8080"
	DefaultWorkerConcurrency = 10
	// DefaultOverdueSweepCron is hourly, on the hour (UTC). Development
	// setups use "@every 1m".
	DefaultOverdueSweepCron = "0 * * * *"
	// DefaultDocumentsSweepCron is daily at 03:30 UTC.
	DefaultDocumentsSweepCron = "30 3 * * *"
	// DocumentsSweepOff is the DOCUMENTS_SWEEP_CRON that schedules no
	// sweep:documents.
	DocumentsSweepOff      = "off"
	DefaultShutdownTimeout = 25 * time.Second
	// DefaultRequestTimeout bounds a tenant request's work in the enqueue
	// service (its look-ups, the database and Redis).
	DefaultRequestTimeout = 10 * time.Second
	// DefaultAdminRequestTimeout bounds an admin request's work in the
	// enqueue service (provisioning, status changes, queue operations,
	// migrations fan-out).
	DefaultAdminRequestTimeout = 30 * time.Second
	DefaultMailFrom            = "billing@localhost"
	DefaultOutboxDir           = "./data/outbox"
	DefaultDocumentsDir        = "./data/documents"
	// DefaultTaskCheckInterval is how long an idle worker waits between
	// polls of its queues (internal/worker explains the choice).
	DefaultTaskCheckInterval = 20 * time.Millisecond
	// DefaultDBPoolHeadroom is added to WorkerConcurrency for the default
	// DB_MAX_CONNS: catalog look-ups, readiness pings and the scheduler.
	DefaultDBPoolHeadroom = 4
	// MaxDBConns bounds DB_MAX_CONNS and TENANT_DB_MAX_CONNS (and so
	// WORKER_CONCURRENCY, which DB_MAX_CONNS must cover).
	MaxDBConns = 10_000
	// MaxQueueShards bounds QUEUE_SHARDS and QUEUE_SHARDS_SERVED (the
	// same bound as tasks.MaxQueueShards; config does not import tasks).
	MaxQueueShards = 16
	// DefaultDBBreakerProbeMin, DefaultDBBreakerProbeMax and
	// DefaultDBBreakerProbeTimeout are the worker's database breaker
	// timings when DB_BREAKER_PROBE_MIN, _MAX and _TIMEOUT are unset: those
	// of worker.BreakerOptions (config does not import the worker, which
	// the enqueue binary leaves out; a test checks that they agree).
	DefaultDBBreakerProbeMin     = time.Second
	DefaultDBBreakerProbeMax     = 30 * time.Second
	DefaultDBBreakerProbeTimeout = 5 * time.Second
	// MaxDBBreakerProbeMin, MaxDBBreakerProbeMax and
	// MaxDBBreakerProbeTimeout bound those settings: a database found
	// back must not wait long for its next probe, and a probe is run by a
	// task, which waits for it within its own timeout (1 minute for
	// invoice:reminder, the shortest).
	MaxDBBreakerProbeMin     = time.Minute
	MaxDBBreakerProbeMax     = 10 * time.Minute
	MaxDBBreakerProbeTimeout = 30 * time.Second
	// DefaultNotReadyDelayMin and DefaultNotReadyDelayMax bound the
	// worker's random wait before a task that met a not-ready wait is tried
	// again when NOT_READY_DELAY_MIN and _MAX are unset: those of
	// worker.ServerOptions (config does not import the worker; a test
	// checks that they agree).
	DefaultNotReadyDelayMin = 15 * time.Second
	DefaultNotReadyDelayMax = 30 * time.Second
	// MaxNotReadyDelay bounds NOT_READY_DELAY_MIN and _MAX: a tenant or
	// database that is ready again is served at most this long later.
	MaxNotReadyDelay = 10 * time.Minute
	// MinAdminTokenLen is the shortest ADMIN_TOKEN accepted outside the dev
	// stack: 32 bytes (`openssl rand -hex 32` gives 64 ASCII characters).
	MinAdminTokenLen = 32
	// MaxReminderSendHour is the latest REMINDER_SEND_HOUR: 23, the last
	// hour of a day.
	MaxReminderSendHour = 23
	// MaxTimeout bounds SHUTDOWN_TIMEOUT, REQUEST_TIMEOUT and
	// ADMIN_REQUEST_TIMEOUT: a year, far past any useful value, and far
	// enough below the largest time.Duration that the margins the
	// binaries add to them (the worker's stop limit, the enqueue
	// service's write timeout) cannot wrap around to a negative duration.
	MaxTimeout = 365 * 24 * time.Hour
)

// Log formats.
const (
	LogFormatText = "text"
	LogFormatJSON = "json"
)

// Config is the configuration of a worker or enqueue process.
type Config struct {
	// DatabaseURL (DATABASE_URL, required) is the application pool's
	// PostgreSQL URL. Behind PgBouncer in transaction pooling mode, add
	// default_query_exec_mode=exec.
	DatabaseURL string
	// MigrationsDatabaseURL (MIGRATIONS_DATABASE_URL) runs schema changes,
	// possibly over a direct connection; "" means DatabaseURL.
	MigrationsDatabaseURL string
	// RedisURL (REDIS_URL) in asynq's URI forms: redis://, rediss://,
	// redis-socket://, or Redis Sentinel as
	// redis-sentinel://...?master=name (RedisSentinelScheme), or a Redis
	// Cluster as redis-cluster://[user:password@]host:port,host:port,...
	// (RedisClusterScheme), the last two over TLS as rediss-sentinel://
	// and rediss-cluster:// (ParseRedisURL); "" means DefaultRedisURL.
	RedisURL string
	// DomainSuffix (DOMAIN_SUFFIX) is the tenants' host suffix
	// (acme + ".example.com"); "" means DefaultDomainSuffix.
	DomainSuffix string
	// AdminToken (ADMIN_TOKEN) guards the admin routes; "" disables them.
	// It must have at least MinAdminTokenLen bytes unless Dev.
	AdminToken string
	// Dev is set by the dev stack (`worker -dev`), never by the
	// environment: it accepts an ADMIN_TOKEN shorter than MinAdminTokenLen
	// (the dev stack generates a long one unless told otherwise).
	Dev bool
	// AuthFailuresPerMinute (AUTH_FAILURES_PER_MINUTE) is how many failed
	// authentications one client address may make per minute (and in a
	// burst) before the enqueue service answers it 429; 0 means the HTTP
	// API's default (20).
	AuthFailuresPerMinute int
	// ClientIPHeader (CLIENT_IP_HEADER) names the header a trusted reverse
	// proxy sets to the client's address (X-Real-IP, X-Forwarded-For: its
	// last address); failed authentications are counted per that address.
	// "" counts per peer address. Set it only behind a proxy that
	// overwrites the header.
	ClientIPHeader string
	// HTTPAddr (HTTP_ADDR) is the process's own listen address; "" means
	// the binary's default (HTTPAddrOr).
	HTTPAddr string
	// WorkerConcurrency (WORKER_CONCURRENCY) is the number of tasks a
	// worker runs at once; 0 means DefaultWorkerConcurrency.
	WorkerConcurrency int
	// OverdueSweepCron (OVERDUE_SWEEP_CRON) is the sweep schedule: a cron
	// spec or a descriptor such as "@every 30s"; "" means
	// DefaultOverdueSweepCron.
	OverdueSweepCron string
	// DocumentsSweepCron (DOCUMENTS_SWEEP_CRON) is the schedule of
	// sweep:documents, which enqueues a documents:prune per active tenant
	// to remove the PDFs of deleted invoices, in
	// OverdueSweepCron's forms, or DocumentsSweepOff; "" means
	// DefaultDocumentsSweepCron.
	DocumentsSweepCron string
	// ReminderSendHour (REMINDER_SEND_HOUR, 0 to MaxReminderSendHour) is
	// the hour of each tenant's own day (in its time zone) from which the
	// overdue sweep's invoices:overdue enqueues the day's reminders; a
	// sweep before it marks overdue invoices and enqueues none
	// (worker.Handlers.ReminderSendHour). 0, the default, enqueues them
	// with the first sweep of the tenant's day. It needs a sweep at or
	// after the hour every day in every tenant's zone: with an
	// OverdueSweepCron that does not fire every hour the worker warns at
	// start.
	ReminderSendHour int
	// SchedulerEnabled (SCHEDULER_ENABLED, default true) runs the sweep
	// scheduler loop in this worker. Any number of replicas may run it.
	SchedulerEnabled bool
	// RequestTimeout (REQUEST_TIMEOUT) bounds a tenant request's work in the
	// enqueue service; past it the request answers 503. 0 means
	// DefaultRequestTimeout; at most MaxTimeout.
	RequestTimeout time.Duration
	// AdminRequestTimeout (ADMIN_REQUEST_TIMEOUT) bounds an admin route's
	// work in the enqueue service (every route under /admin but the
	// dashboard); past it the request answers 503. 0 means
	// DefaultAdminRequestTimeout; at most MaxTimeout.
	AdminRequestTimeout time.Duration
	// APITenantDBConns (API_TENANT_DB_CONNS) is how many database units of
	// work one tenant's requests run at once in an enqueue service
	// process, so that one tenant cannot hold every connection of the
	// pool; 0 means the HTTP API's default (4).
	APITenantDBConns int
	// ShutdownTimeout (SHUTDOWN_TIMEOUT) is how long running tasks get to
	// finish on shutdown; 0 means DefaultShutdownTimeout; at most
	// MaxTimeout.
	ShutdownTimeout time.Duration
	// SMTPURL (SMTP_URL, smtp://user:pass@host:port); "" writes reminders
	// as .eml files to OutboxDir.
	SMTPURL string
	// SMTPTLS (SMTP_TLS) is how an smtp:// SMTPURL uses STARTTLS, one of
	// SMTPTLSModes: "opportunistic" (when offered; "" means it) or
	// "required" (a server that does not offer it gets nothing).
	SMTPTLS string
	// MailFrom (MAIL_FROM) is the From address of reminders, an address
	// net/mail parses (billing@example.com, Billing <billing@example.com>);
	// "" means DefaultMailFrom.
	MailFrom string
	// OutboxDir (OUTBOX_DIR); "" means DefaultOutboxDir.
	OutboxDir string
	// DocumentsDir (DOCUMENTS_DIR) holds rendered PDFs; "" means
	// DefaultDocumentsDir.
	DocumentsDir string
	// PDFMaxLines (PDF_MAX_LINES) is the most line items an invoice may
	// have to be rendered; one with more is archived with the reason. 0
	// means the renderer's default (5,000).
	PDFMaxLines int
	// PDFMaxLineBytes (PDF_MAX_LINE_BYTES) is the most bytes an invoice's
	// line item descriptions may add up to for it to be rendered; one with
	// more is archived with the reason, its lines never loaded. 0 means
	// the renderer's default (16 MiB).
	PDFMaxLineBytes int
	// PDFMaxBytes (PDF_MAX_BYTES) is the largest PDF the worker stores; an
	// invoice whose document is larger is archived with the reason. 0 means
	// the renderer's default (16 MiB).
	PDFMaxBytes int
	// PDFMaxPages (PDF_MAX_PAGES) is the most pages an invoice's PDF may
	// have; the render stops at the next page and the task is archived
	// with the reason. It bounds a render's memory (the renderer holds
	// every page until it writes the document). 0 means the renderer's
	// default (10,000).
	PDFMaxPages int
	// LogFormat (LOG_FORMAT): "text" (default) or "json".
	LogFormat string
	// LogLevel (LOG_LEVEL): debug, info (default), warn or error.
	LogLevel slog.Level
	// DBMaxConns (DB_MAX_CONNS) is the application pool's size; 0 means
	// WorkerConcurrency + DefaultDBPoolHeadroom. It must be at least
	// WorkerConcurrency.
	DBMaxConns int
	// DBPoolLanes (DB_POOL_LANES) splits the connections that serve
	// tenants' units of work on each database (DBMaxConns on "main",
	// TenantDBMaxConns elsewhere) into this many lanes (schema.Lanes), so
	// that each PostgreSQL backend serves a few tenants; 0 means one lane per
	// connection, 1 turns lanes off (one pool). On "main" the lanes are
	// opened beside the application pool, which keeps the catalog and the
	// operators' work.
	DBPoolLanes int
	// DBKeepConns (DB_KEEP_CONNS, default true) keeps every connection
	// that runs tenants' units of work open (the lanes, or the application
	// pool without lanes; TenantDBMaxConns on other tenant databases once
	// used): opened in the background at start, reopened when one closes,
	// so a burst after a start or a quiet spell does not wait for new
	// PostgreSQL backends. false opens them on first use and closes idle
	// ones (pgx's default).
	DBKeepConns bool
	// TenantDatabases (TENANT_DATABASES, "name=url,name2=url2") are the
	// URLs of tenant databases other than "main" (DATABASE_URL), by the
	// name the catalog places tenants on; each is registered in the catalog
	// at start. A URL given here wins over one stored by `enqueue db add`.
	TenantDatabases map[string]string
	// TenantDBMaxConns (TENANT_DB_MAX_CONNS) is the size of each other
	// tenant database's pool, opened on first use; 0 means DBMaxConns.
	TenantDBMaxConns int
	// TenantDBMaxTasks (TENANT_DB_MAX_TASKS) bounds the tasks of the
	// tenants of one tenant database other than "main" that a worker runs
	// at once (worker.DatabaseSlots), so that a database that hangs cannot
	// take every worker slot; 0 means
	// DefaultTenantDBMaxTasks(WorkerConcurrency); at most
	// WorkerConcurrency (which bounds nothing).
	TenantDBMaxTasks int
	// DBBreakerProbeMin (DB_BREAKER_PROBE_MIN) is how long the worker
	// holds the tasks of a database it found unreachable before the first
	// probe of it, doubled after each failed probe up to DBBreakerProbeMax
	// (DB_BREAKER_PROBE_MAX, at least DBBreakerProbeMin); a probe is
	// bounded by DBBreakerProbeTimeout (DB_BREAKER_PROBE_TIMEOUT)
	// (worker.BreakerOptions). 0 means DefaultDBBreakerProbeMin,
	// DefaultDBBreakerProbeMax (or DBBreakerProbeMin when larger) and
	// DefaultDBBreakerProbeTimeout.
	DBBreakerProbeMin, DBBreakerProbeMax, DBBreakerProbeTimeout time.Duration
	// NotReadyDelayMin (NOT_READY_DELAY_MIN) and NotReadyDelayMax
	// (NOT_READY_DELAY_MAX, at least NotReadyDelayMin) bound the random
	// wait before the worker tries again a task that met a not-ready wait
	// (worker.ErrTenantNotReady: its tenant provisioning, or suspended and
	// not held by the fair dispatcher; its database busy or unreachable),
	// which does not count as a failure (worker.ServerOptions). 0 means
	// DefaultNotReadyDelayMin and DefaultNotReadyDelayMax (or
	// NotReadyDelayMin when larger).
	NotReadyDelayMin, NotReadyDelayMax time.Duration
	// AllowTenantHeader (ALLOW_TENANT_HEADER, default false) lets the
	// enqueue service take the tenant from X-Tenant: development only.
	AllowTenantHeader bool
	// DashboardWritable (DASHBOARD_WRITABLE, default false) lets operators
	// change tasks and queues from asynqmon (run, delete, pause); the zero
	// value serves it read-only. DASHBOARD_READONLY, its former inverse, is
	// still read when DASHBOARD_WRITABLE is unset.
	DashboardWritable bool
	// TenantCacheTTL (TENANT_CACHE_TTL) is how long a tenant stays in the
	// shared Redis cache; 0 means the storage package's default.
	TenantCacheTTL time.Duration
	// RedisAutoPipeline (REDIS_AUTOPIPELINE, default true) lets the enqueue
	// service coalesce the enqueues of concurrent requests into Redis
	// pipelines (go-redis autopipelining): one write and one read for many
	// requests instead of one each. Set false to send every enqueue on its
	// own, as the worker does.
	RedisAutoPipeline bool
	// FairDispatch (FAIR_DISPATCH, default true) admits tenants' tasks
	// through per-tenant backlogs in a fair order (package fair); false
	// enqueues them straight into asynq's queues, first come first served.
	// Every process sharing a Redis must use the same setting.
	FairDispatch bool
	// PlanLimits (PLAN_LIMITS) sets plans' share and caps in fair
	// dispatch: "plan=weight:max_running:max_waiting,..."; plans it does
	// not name keep fair.DefaultPlans. Resolve parses it into Plans.
	PlanLimits string
	// Plans are PlanLimits parsed (set by Resolve).
	Plans fair.Plans
	// FairPendingTime (FAIR_PENDING_TIME) is how much work the dispatcher
	// keeps waiting in an asynq queue per live worker slot, at the queue's
	// measured cost per task (between 1 and 50 tasks per slot); 0 means
	// fair.DefaultPendingTime.
	FairPendingTime time.Duration
	// FairMaxWaitingTotal (FAIR_MAX_WAITING_TOTAL) caps the tasks waiting
	// in all tenants' backlogs of one queue (fair.Config.MaxWaitingTotal:
	// it bounds the Redis memory they take); 0 means
	// fair.DefaultMaxWaitingTotal.
	FairMaxWaitingTotal int
	// TaskCheckInterval (TASK_CHECK_INTERVAL) is how long an idle worker
	// waits between polls of its queues without fair dispatch, or while
	// its subscription to the dispatcher's announcements is down; 0 means
	// DefaultTaskCheckInterval.
	TaskCheckInterval time.Duration
	// IdleRecheckInterval (IDLE_RECHECK_INTERVAL) is, with fair dispatch,
	// how long an idle worker waits for the dispatcher to announce work
	// before it looks at its queues all the same (fair.IdleWaiter); 0
	// means fair.DefaultIdleRecheck.
	IdleRecheckInterval time.Duration
	// QueueShards (QUEUE_SHARDS, 1 to MaxQueueShards) is how many asynq
	// queues each queue class (critical, default, low) has, so that a
	// Redis Cluster's masters share a class (tasks.Layout); a tenant's
	// tasks of one class always go to the same one. 0 means 1: one queue
	// per class, named after it. Every process sharing a Redis must use
	// the same value.
	QueueShards int
	// QueueShardsServed (QUEUE_SHARDS_SERVED, QueueShards to
	// MaxQueueShards) is how many queues per class workers serve and task
	// look-ups and tenant operations cover: set it to the larger count on
	// every process while QUEUE_SHARDS changes, so tasks in the other
	// count's queues are still run and found. 0 means QueueShards.
	QueueShardsServed int
	// WorkerQueueClasses (WORKER_QUEUE_CLASSES: a comma-separated list of
	// critical, default and low) are the queue classes a worker serves,
	// every shard of each; nil means all three. asynq polls the queues a
	// worker serves one script at a time until one has a task, so a worker
	// that serves classes with no work pays an empty poll for most tasks;
	// workers dedicated to a class avoid it. Every class must be served by
	// some worker, or its tasks wait.
	WorkerQueueClasses []string
}

// SMTPTLSModes are the values of SMTP_TLS, the default first:
// mailer.TLSOpportunistic and mailer.TLSRequired (config does not import
// the mailer, which the enqueue binary leaves out; a test checks that the
// two agree).
var SMTPTLSModes = []string{"opportunistic", "required"}

// QueueClasses are the queue classes WORKER_QUEUE_CLASSES may name, in
// priority order: tasks.Queues (config does not import tasks; a test
// checks that the two agree).
var QueueClasses = []string{"critical", "default", "low"}

// FromEnv reads the configuration through getenv (os.Getenv in the
// binaries, a map in tests), applies the defaults and validates it: Parse,
// then Resolve. Errors name the variable:
// `WORKER_CONCURRENCY: must be a positive integer, got "x"`.
func FromEnv(getenv func(string) string) (Config, error) {
	c, err := Parse(getenv)
	if err != nil {
		return Config{}, err
	}
	return c.Resolve()
}

// Parse reads the variables through getenv into a Config without defaults
// (except the booleans', which an unset variable cannot be told from) and
// reports every variable that does not parse. Apply flag overrides to the
// result, then call Resolve.
func Parse(getenv func(string) string) (Config, error) {
	p := parser{getenv: getenv}
	c := Config{
		DatabaseURL:           p.str("DATABASE_URL"),
		MigrationsDatabaseURL: p.str("MIGRATIONS_DATABASE_URL"),
		RedisURL:              p.str("REDIS_URL"),
		DomainSuffix:          p.str("DOMAIN_SUFFIX"),
		AdminToken:            p.str("ADMIN_TOKEN"),
		AuthFailuresPerMinute: p.positiveInt("AUTH_FAILURES_PER_MINUTE"),
		ClientIPHeader:        p.str("CLIENT_IP_HEADER"),
		HTTPAddr:              p.str("HTTP_ADDR"),
		WorkerConcurrency:     p.positiveInt("WORKER_CONCURRENCY"),
		OverdueSweepCron:      p.str("OVERDUE_SWEEP_CRON"),
		DocumentsSweepCron:    p.str("DOCUMENTS_SWEEP_CRON"),
		ReminderSendHour:      p.hour("REMINDER_SEND_HOUR"),
		SchedulerEnabled:      p.boolean("SCHEDULER_ENABLED", true),
		ShutdownTimeout:       p.duration("SHUTDOWN_TIMEOUT"),
		RequestTimeout:        p.duration("REQUEST_TIMEOUT"),
		AdminRequestTimeout:   p.duration("ADMIN_REQUEST_TIMEOUT"),
		APITenantDBConns:      p.positiveInt("API_TENANT_DB_CONNS"),
		SMTPURL:               p.str("SMTP_URL"),
		SMTPTLS:               strings.ToLower(p.str("SMTP_TLS")),
		MailFrom:              p.str("MAIL_FROM"),
		OutboxDir:             p.str("OUTBOX_DIR"),
		DocumentsDir:          p.str("DOCUMENTS_DIR"),
		PDFMaxLines:           p.positiveInt("PDF_MAX_LINES"),
		PDFMaxLineBytes:       p.positiveInt("PDF_MAX_LINE_BYTES"),
		PDFMaxBytes:           p.positiveInt("PDF_MAX_BYTES"),
		PDFMaxPages:           p.positiveInt("PDF_MAX_PAGES"),
		LogFormat:             strings.ToLower(p.str("LOG_FORMAT")),
		LogLevel:              p.level("LOG_LEVEL"),
		DBMaxConns:            p.positiveInt("DB_MAX_CONNS"),
		DBPoolLanes:           p.positiveInt("DB_POOL_LANES"),
		DBKeepConns:           p.boolean("DB_KEEP_CONNS", true),
		TenantDatabases:       p.databases("TENANT_DATABASES"),
		TenantDBMaxConns:      p.positiveInt("TENANT_DB_MAX_CONNS"),
		TenantDBMaxTasks:      p.positiveInt("TENANT_DB_MAX_TASKS"),
		DBBreakerProbeMin:     p.duration("DB_BREAKER_PROBE_MIN"),
		DBBreakerProbeMax:     p.duration("DB_BREAKER_PROBE_MAX"),
		DBBreakerProbeTimeout: p.duration("DB_BREAKER_PROBE_TIMEOUT"),
		NotReadyDelayMin:      p.duration("NOT_READY_DELAY_MIN"),
		NotReadyDelayMax:      p.duration("NOT_READY_DELAY_MAX"),
		AllowTenantHeader:     p.boolean("ALLOW_TENANT_HEADER", false),
		DashboardWritable:     p.dashboardWritable(),
		TenantCacheTTL:        p.duration("TENANT_CACHE_TTL"),
		RedisAutoPipeline:     p.boolean("REDIS_AUTOPIPELINE", true),
		FairDispatch:          p.boolean("FAIR_DISPATCH", true),
		PlanLimits:            p.str("PLAN_LIMITS"),
		FairPendingTime:       p.duration("FAIR_PENDING_TIME"),
		FairMaxWaitingTotal:   p.positiveInt("FAIR_MAX_WAITING_TOTAL"),
		TaskCheckInterval:     p.duration("TASK_CHECK_INTERVAL"),
		IdleRecheckInterval:   p.duration("IDLE_RECHECK_INTERVAL"),
		QueueShards:           p.positiveInt("QUEUE_SHARDS"),
		QueueShardsServed:     p.positiveInt("QUEUE_SHARDS_SERVED"),
		WorkerQueueClasses:    p.queueClasses("WORKER_QUEUE_CLASSES"),
	}
	if err := errors.Join(p.errs...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Resolve returns c with every zero field set to its default, after
// checking the result; every error names its variable. Call it once, after
// the flag overrides.
func (c Config) Resolve() (Config, error) {
	c = c.withDefaults()
	err := c.validate()
	plans, perr := fair.ParsePlans(c.PlanLimits)
	if perr != nil {
		err = errors.Join(err, fmt.Errorf("PLAN_LIMITS: %w", perr))
	}
	if err != nil {
		return Config{}, err
	}
	c.Plans = plans
	return c, nil
}

// withDefaults returns c with every zero field set to its default. (It
// cannot tell an unset boolean from false: Parse applies the boolean
// defaults.)
func (c Config) withDefaults() Config {
	c.MigrationsDatabaseURL = cmp.Or(c.MigrationsDatabaseURL, c.DatabaseURL)
	c.RedisURL = cmp.Or(c.RedisURL, DefaultRedisURL)
	c.DomainSuffix = cmp.Or(c.DomainSuffix, DefaultDomainSuffix)
	// A fully qualified suffix ("example.com.") names the same hosts:
	// tenantctx.SlugFromHost drops the root dot of the Host, so the
	// suffix must not keep it.
	if s := strings.TrimRight(c.DomainSuffix, "."); s != "" {
		c.DomainSuffix = s
	}
	c.WorkerConcurrency = cmp.Or(c.WorkerConcurrency, DefaultWorkerConcurrency)
	c.OverdueSweepCron = cmp.Or(c.OverdueSweepCron, DefaultOverdueSweepCron)
	c.DocumentsSweepCron = cmp.Or(c.DocumentsSweepCron, DefaultDocumentsSweepCron)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, DefaultRequestTimeout)
	c.AdminRequestTimeout = cmp.Or(c.AdminRequestTimeout, DefaultAdminRequestTimeout)
	c.MailFrom = cmp.Or(c.MailFrom, DefaultMailFrom)
	c.SMTPTLS = cmp.Or(c.SMTPTLS, SMTPTLSModes[0])
	c.OutboxDir = cmp.Or(c.OutboxDir, DefaultOutboxDir)
	c.DocumentsDir = cmp.Or(c.DocumentsDir, DefaultDocumentsDir)
	c.LogFormat = cmp.Or(c.LogFormat, LogFormatText)
	// Saturating: a WORKER_CONCURRENCY near the largest int must not wrap
	// the default around (validate refuses it).
	// The headroom stops at MaxDBConns: a WORKER_CONCURRENCY up to it
	// starts with the default pool.
	c.DBMaxConns = cmp.Or(c.DBMaxConns, max(c.WorkerConcurrency, min(MaxDBConns, c.WorkerConcurrency+DefaultDBPoolHeadroom)))
	c.TenantDBMaxConns = cmp.Or(c.TenantDBMaxConns, c.DBMaxConns)
	c.TenantDBMaxTasks = cmp.Or(c.TenantDBMaxTasks, DefaultTenantDBMaxTasks(c.WorkerConcurrency))
	c.DBPoolLanes = cmp.Or(c.DBPoolLanes, c.DBMaxConns)
	c.DBBreakerProbeMin = cmp.Or(c.DBBreakerProbeMin, DefaultDBBreakerProbeMin)
	// Unset, the maximum follows a larger minimum rather than refusing it.
	c.DBBreakerProbeMax = cmp.Or(c.DBBreakerProbeMax, max(DefaultDBBreakerProbeMax, c.DBBreakerProbeMin))
	c.DBBreakerProbeTimeout = cmp.Or(c.DBBreakerProbeTimeout, DefaultDBBreakerProbeTimeout)
	c.NotReadyDelayMin = cmp.Or(c.NotReadyDelayMin, DefaultNotReadyDelayMin)
	// Unset, the maximum follows a larger minimum rather than refusing it.
	c.NotReadyDelayMax = cmp.Or(c.NotReadyDelayMax, max(DefaultNotReadyDelayMax, c.NotReadyDelayMin))
	c.TaskCheckInterval = cmp.Or(c.TaskCheckInterval, DefaultTaskCheckInterval)
	c.IdleRecheckInterval = cmp.Or(c.IdleRecheckInterval, fair.DefaultIdleRecheck)
	c.FairPendingTime = cmp.Or(c.FairPendingTime, fair.DefaultPendingTime)
	c.QueueShards = cmp.Or(c.QueueShards, 1)
	c.QueueShardsServed = cmp.Or(c.QueueShardsServed, c.QueueShards)
	if len(c.WorkerQueueClasses) == 0 {
		c.WorkerQueueClasses = slices.Clone(QueueClasses)
	}
	return c
}

// validate checks a configuration with its defaults applied; every error
// names its variable.
func (c Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.DatabaseURL == "" {
		bad("DATABASE_URL: required")
	}
	// Checked here, before any connection, and without pgx's error: it
	// quotes the string, and its masking of the password is best effort
	// (an unterminated quote leaves the rest of the password in it).
	if c.DatabaseURL != "" {
		if why := databaseURLError(c.DatabaseURL); why != "" {
			bad("DATABASE_URL: %s", why)
		}
	}
	if c.MigrationsDatabaseURL != c.DatabaseURL {
		if why := databaseURLError(c.MigrationsDatabaseURL); why != "" {
			bad("MIGRATIONS_DATABASE_URL: %s", why)
		}
	}
	if _, err := ParseRedisURL(c.RedisURL); err != nil {
		bad("REDIS_URL: %v", err)
	}
	if strings.Trim(c.DomainSuffix, ".") == "" {
		bad("DOMAIN_SUFFIX: must name a domain, got %q", c.DomainSuffix)
	} else if !validDomainSuffix(c.DomainSuffix) {
		// A Host never ends in a port, scheme or path given here: every
		// tenant request would be refused as a malformed Host.
		bad("DOMAIN_SUFFIX: must be DNS labels such as .example.com (no scheme, port or path), got %.80q", c.DomainSuffix)
	}
	if c.WorkerConcurrency <= 0 {
		bad("WORKER_CONCURRENCY: must be a positive integer, got %d", c.WorkerConcurrency)
	}
	if c.WorkerConcurrency > MaxDBConns {
		// DB_MAX_CONNS must cover it; say which variable to lower.
		bad("WORKER_CONCURRENCY: at most %d, got %d", MaxDBConns, c.WorkerConcurrency)
	}
	// The scheduler's own parser: what starts here is what it runs.
	if _, err := tasks.ParseSchedule(c.OverdueSweepCron); err != nil {
		bad("%v", err)
	}
	if c.DocumentsSweepCron != DocumentsSweepOff {
		if _, err := tasks.ParseScheduleOf(tasks.DocumentsCronVar, c.DocumentsSweepCron); err != nil {
			bad("%v (or %s)", err, DocumentsSweepOff)
		}
	}
	if c.ReminderSendHour < 0 || c.ReminderSendHour > MaxReminderSendHour {
		bad("REMINDER_SEND_HOUR: must be an hour from 0 to %d, got %d", MaxReminderSendHour, c.ReminderSendHour)
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"SHUTDOWN_TIMEOUT", c.ShutdownTimeout}, {"REQUEST_TIMEOUT", c.RequestTimeout}, {"ADMIN_REQUEST_TIMEOUT", c.AdminRequestTimeout}} {
		switch {
		case t.d <= 0:
			bad("%s: must be positive, got %v", t.name, t.d)
		case t.d > MaxTimeout:
			// The binaries add margins to it: near the largest duration
			// the sum would wrap around to a negative one.
			bad("%s: at most %v (a year), got %v", t.name, MaxTimeout, t.d)
		}
	}
	if c.APITenantDBConns > MaxDBConns {
		bad("API_TENANT_DB_CONNS: at most %d, got %d", MaxDBConns, c.APITenantDBConns)
	}
	if c.LogFormat != LogFormatText && c.LogFormat != LogFormatJSON {
		bad("LOG_FORMAT: must be text or json, got %q", c.LogFormat)
	}
	// A bound well above any PostgreSQL's max_connections: each connection
	// may be a lane (DB_POOL_LANES defaults to DB_MAX_CONNS), a pool of
	// its own made at start-up.
	// Past it, WORKER_CONCURRENCY is named already: the pools' defaults
	// follow it, and an error of theirs would name variables not set.
	overConcurrency := c.WorkerConcurrency > MaxDBConns
	if c.DBMaxConns > MaxDBConns && !overConcurrency {
		bad("DB_MAX_CONNS: at most %d, got %d", MaxDBConns, c.DBMaxConns)
	}
	if c.TenantDBMaxConns > MaxDBConns && !overConcurrency {
		bad("TENANT_DB_MAX_CONNS: at most %d, got %d", MaxDBConns, c.TenantDBMaxConns)
	}
	if c.TenantDBMaxTasks > c.WorkerConcurrency {
		bad("TENANT_DB_MAX_TASKS: at most WORKER_CONCURRENCY %d, got %d", c.WorkerConcurrency, c.TenantDBMaxTasks)
	}
	if c.DBMaxConns < c.WorkerConcurrency {
		bad("DB_MAX_CONNS: %d is smaller than WORKER_CONCURRENCY %d: every running task may need a connection", c.DBMaxConns, c.WorkerConcurrency)
	}
	if n := len(c.AdminToken); n > 0 && n < MinAdminTokenLen && !c.Dev {
		// The token itself is never part of the message.
		bad("ADMIN_TOKEN: must have at least %d bytes, got %d (generate one: openssl rand -hex 32)", MinAdminTokenLen, n)
	}
	// The worker parses it for every reminder: a From that does not parse
	// would fail them all, one retry after another, long after the start.
	if _, err := mail.ParseAddress(c.MailFrom); err != nil {
		bad("MAIL_FROM: not an email address: %.80q (%v)", c.MailFrom, err)
	}
	// Checked at start: a mode misspelt would otherwise send in clear
	// text to a server that does not offer STARTTLS.
	if !slices.Contains(SMTPTLSModes, c.SMTPTLS) {
		bad("SMTP_TLS: must be %s, got %.40q", strings.Join(SMTPTLSModes, " or "), c.SMTPTLS)
	}
	if c.ClientIPHeader != "" && !validHeaderName(c.ClientIPHeader) {
		bad("CLIENT_IP_HEADER: not a header name: %.40q", c.ClientIPHeader)
	}
	if c.TenantCacheTTL < 0 {
		bad("TENANT_CACHE_TTL: must not be negative, got %v", c.TenantCacheTTL)
	}
	if c.TenantCacheTTL > 0 && c.TenantCacheTTL < time.Millisecond {
		// Redis keeps keys for whole milliseconds: PX 0 is refused.
		bad("TENANT_CACHE_TTL: at least 1ms, got %v", c.TenantCacheTTL)
	}
	if c.FairPendingTime > 10*time.Second {
		bad("FAIR_PENDING_TIME: at most 10s, got %v", c.FairPendingTime)
	}
	if c.TaskCheckInterval < time.Millisecond || c.TaskCheckInterval > time.Minute {
		bad("TASK_CHECK_INTERVAL: must be between 1ms and 1m, got %v", c.TaskCheckInterval)
	}
	if c.IdleRecheckInterval < time.Millisecond || c.IdleRecheckInterval > time.Minute {
		bad("IDLE_RECHECK_INTERVAL: must be between 1ms and 1m, got %v", c.IdleRecheckInterval)
	}
	if c.DBBreakerProbeMin < time.Millisecond || c.DBBreakerProbeMin > MaxDBBreakerProbeMin {
		bad("DB_BREAKER_PROBE_MIN: must be between 1ms and %v, got %v", MaxDBBreakerProbeMin, c.DBBreakerProbeMin)
	} else if c.DBBreakerProbeMax < c.DBBreakerProbeMin || c.DBBreakerProbeMax > MaxDBBreakerProbeMax {
		bad("DB_BREAKER_PROBE_MAX: must be between DB_BREAKER_PROBE_MIN (%v) and %v, got %v", c.DBBreakerProbeMin, MaxDBBreakerProbeMax, c.DBBreakerProbeMax)
	}
	if c.DBBreakerProbeTimeout < time.Millisecond || c.DBBreakerProbeTimeout > MaxDBBreakerProbeTimeout {
		bad("DB_BREAKER_PROBE_TIMEOUT: must be between 1ms and %v, got %v", MaxDBBreakerProbeTimeout, c.DBBreakerProbeTimeout)
	}
	// Under a second a not-ready task would only spin (asynq moves due
	// retries once a second), and a lost answer to a park call needs the
	// heartbeat's second to take the retry back (docs/guarantees.md).
	if c.NotReadyDelayMin < time.Second || c.NotReadyDelayMin > MaxNotReadyDelay {
		bad("NOT_READY_DELAY_MIN: must be between 1s and %v, got %v", MaxNotReadyDelay, c.NotReadyDelayMin)
	} else if c.NotReadyDelayMax < c.NotReadyDelayMin || c.NotReadyDelayMax > MaxNotReadyDelay {
		bad("NOT_READY_DELAY_MAX: must be between NOT_READY_DELAY_MIN (%v) and %v, got %v", c.NotReadyDelayMin, MaxNotReadyDelay, c.NotReadyDelayMax)
	}
	if c.QueueShards < 1 || c.QueueShards > MaxQueueShards {
		bad("QUEUE_SHARDS: must be between 1 and %d, got %d", MaxQueueShards, c.QueueShards)
	} else if c.QueueShardsServed < c.QueueShards || c.QueueShardsServed > MaxQueueShards {
		bad("QUEUE_SHARDS_SERVED: must be between QUEUE_SHARDS (%d) and %d, got %d", c.QueueShards, MaxQueueShards, c.QueueShardsServed)
	}
	return errors.Join(errs...)
}

// HTTPAddrOr returns HTTPAddr, or def when it is unset: each binary has its
// own default port (DefaultWorkerHTTPAddr, DefaultEnqueueHTTPAddr).
func (c Config) HTTPAddrOr(def string) string { return cmp.Or(c.HTTPAddr, def) }

// RedisConnOpt parses RedisURL into asynq's connection options.
func (c Config) RedisConnOpt() (asynq.RedisConnOpt, error) {
	opt, err := ParseRedisURL(cmp.Or(c.RedisURL, DefaultRedisURL))
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	return opt, nil
}

// parser reads variables and collects their parse errors.
type parser struct {
	getenv func(string) string
	errs   []error
}

func (p *parser) str(name string) string { return strings.TrimSpace(p.getenv(name)) }

func (p *parser) positiveInt(name string) int {
	s := p.str(name)
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		p.errs = append(p.errs, fmt.Errorf("%s: must be a positive integer, got %.40q", name, s))
		return 0
	}
	return n
}

// hour reads an hour of the day, an integer (validate checks that it is
// 0 to MaxReminderSendHour); unset is 0.
func (p *parser) hour(name string) int {
	s := p.str(name)
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("%s: must be an hour from 0 to %d, got %.40q", name, MaxReminderSendHour, s))
		return 0
	}
	return n
}

// databases parses "name=url,name2=url2" (TENANT_DATABASES): names as
// tenantctx.ValidateDatabaseName, each once, "main" excluded (it is
// DATABASE_URL), every URL non-empty and parseable; empty entries (a
// trailing comma, two in a row) are ignored. Errors never echo a URL (it may hold
// a password), nor the name of an entry after the first whose URL is
// neither a postgres:// URL nor keyword/value settings: such an entry is
// most likely the rest of the entry before it, cut at an unencoded comma
// in its password, and its "name" a piece of that password; it is named
// by its position instead.
func (p *parser) databases(name string) map[string]string {
	s := p.str(name)
	if s == "" {
		return nil
	}
	var entries []string
	for _, item := range splitDatabases(s) {
		if item = strings.TrimSpace(item); item != "" {
			entries = append(entries, item)
		}
	}
	out := map[string]string{}
	for i, item := range entries {
		db, url, ok := strings.Cut(item, "=")
		db, url = strings.TrimSpace(db), strings.TrimSpace(url)
		switch {
		case !nameLike(db):
			// Not quoted: an entry written without its "name=" is a URL
			// (or keyword/value string) whose password precedes its
			// first '=', if any.
			p.errs = append(p.errs, fmt.Errorf("%s: want name=url, got an entry that does not start with a database name (%w; the entry is not quoted: it may hold a password)", name, tenantctx.ErrInvalidDatabase))
		case i > 0 && !connStringLike(url):
			// Only a comma followed by a name and '=' starts an entry:
			// one in a password ("pa,ss=word") cuts the URL there, and
			// what looks like a name is a piece of the password.
			p.errs = append(p.errs, fmt.Errorf("%s: entry %d of %d is not name=url: after its '=' comes neither a postgres:// URL nor keyword=value settings; a comma followed by a name and '=' starts a new entry, so a comma inside a URL (in its password) must be percent-encoded as %%2C, in the URL form (the entry is not quoted: it may be part of a password)", name, i+1, len(entries)))
		case !ok || url == "":
			p.errs = append(p.errs, fmt.Errorf("%s: want name=url, got an entry without a URL (name %.40q)", name, db))
		case tenantctx.ValidateDatabaseName(db) != nil:
			p.errs = append(p.errs, fmt.Errorf("%s: %w", name, tenantctx.ValidateDatabaseName(db)))
		case db == tenantctx.DefaultDatabase:
			p.errs = append(p.errs, fmt.Errorf("%s: %q is DATABASE_URL's database and cannot be set here", name, db))
		case out[db] != "":
			p.errs = append(p.errs, fmt.Errorf("%s: database %q named twice", name, db))
		case databaseURLError(url) != "":
			// The pools open on first use: checked here, a typo fails the
			// start instead of every tenant placed on the database.
			p.errs = append(p.errs, fmt.Errorf("%s: database %q: the URL %s", name, db, databaseURLError(url)))
		default:
			out[db] = url
		}
	}
	return out
}

// splitDatabases splits a TENANT_DATABASES value into its name=url
// entries. A URL may hold commas (hosts of a multi-host URL, a password):
// a comma starts a new entry only when a name and '=' follow it
// ("eu2=", "us_1 ="); otherwise it stays in the URL. Commas followed by
// nothing but spaces up to the end or to the next entry are empty
// entries, dropped ("eu2=postgres://db2/inv," is eu2's URL without the
// comma, not one of database "inv,"); inside a URL ("pa,,ss") they stay.
func splitDatabases(s string) []string {
	var out []string
	blank := "" // the empty pieces after the last entry, with their commas
	for i, piece := range strings.Split(s, ",") {
		switch {
		case i == 0:
			out = append(out, piece)
		case strings.TrimSpace(piece) == "":
			blank += "," + piece
		case startsWithName(piece):
			out = append(out, piece)
			blank = ""
		default:
			out[len(out)-1] += blank + "," + piece
			blank = ""
		}
	}
	return out
}

// connStringLike reports whether s starts as a connection string pgx
// reads: a postgres:// or postgresql:// URL, or keyword/value settings
// (a keyword of letters and '_', then '=').
func connStringLike(s string) bool {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		return true
	}
	key, _, ok := strings.Cut(s, "=")
	key = strings.TrimSpace(key)
	if !ok || key == "" {
		return false
	}
	for i := 0; i < len(key); i++ {
		if c := key[i] | 0x20; !(c >= 'a' && c <= 'z' || key[i] == '_') {
			return false
		}
	}
	return true
}

// nameLike reports whether s is made of the characters of a database
// name, in any case (letters, digits, '_', '-'), and is not empty: such
// a string may be quoted in an error, even when it is not a valid name;
// anything else may be a URL or a password, and is not.
func nameLike(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20 // lower case of a letter
		if !(c >= 'a' && c <= 'z' || s[i] >= '0' && s[i] <= '9' || s[i] == '_' || s[i] == '-') {
			return false
		}
	}
	return s != ""
}

// startsWithName reports whether s is "name=..." with optional spaces:
// a letter, then letters, digits, '_' or '-' (any case: a wrong name is
// reported by the caller), then '='.
func startsWithName(s string) bool {
	name, _, ok := strings.Cut(s, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i] | 0x20 // lower case of a letter
		if !(c >= 'a' && c <= 'z' || i > 0 && (name[i] >= '0' && name[i] <= '9' || name[i] == '_' || name[i] == '-')) {
			return false
		}
	}
	return true
}

// databaseURLError returns why url cannot be used as the pools use it
// (schema.ParseConfig, whose reason it is); "" when it can. pgx's error is
// not passed on: it quotes the URL, and its redaction of the password is
// best effort. A file the URL (or a PG* variable) names and that cannot be
// read (sslrootcert, sslcert, sslkey) is named with its error instead: the
// URL itself is then fine, and "does not parse" would send the operator
// looking for a typo. A host holding an '@' (one unencoded in the
// password) is refused, with the fix.
func databaseURLError(url string) string {
	if _, err := schema.ParseConfig(url); err != nil {
		return strings.TrimPrefix(err.Error(), "parse database url: ")
	}
	return ""
}

// queueClasses parses a comma-separated list of queue classes
// (WORKER_QUEUE_CLASSES): each one of QueueClasses, each once, at least
// one. Unset gives nil.
func (p *parser) queueClasses(name string) []string {
	s := p.str(name)
	if s == "" {
		return nil
	}
	var out []string
	bad := false
	for _, item := range strings.Split(s, ",") {
		c := strings.ToLower(strings.TrimSpace(item))
		switch {
		case c == "":
			continue
		case !slices.Contains(QueueClasses, c):
			bad = true
			p.errs = append(p.errs, fmt.Errorf("%s: %.40q is not a queue class (%s)", name, c, strings.Join(QueueClasses, ", ")))
		case slices.Contains(out, c):
			bad = true
			p.errs = append(p.errs, fmt.Errorf("%s: %q named twice", name, c))
		default:
			out = append(out, c)
		}
	}
	if len(out) == 0 && !bad {
		p.errs = append(p.errs, fmt.Errorf("%s: names no queue class, got %.40q", name, s))
	}
	return out
}

func (p *parser) boolean(name string, def bool) bool {
	s := p.str(name)
	if s == "" {
		return def
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("%s: must be true or false, got %.40q", name, s))
		return def
	}
	return b
}

// dashboardWritable reads DASHBOARD_WRITABLE, or else the inverse of the
// former DASHBOARD_READONLY; both set and disagreeing is an error.
func (p *parser) dashboardWritable() bool {
	writable, readonly := p.str("DASHBOARD_WRITABLE"), p.str("DASHBOARD_READONLY")
	w := p.boolean("DASHBOARD_WRITABLE", false)
	if readonly == "" {
		return w
	}
	r := p.boolean("DASHBOARD_READONLY", true)
	if writable == "" {
		return !r
	}
	if w == r {
		p.errs = append(p.errs, fmt.Errorf("DASHBOARD_WRITABLE %q and DASHBOARD_READONLY %q disagree: set only DASHBOARD_WRITABLE", writable, readonly))
	}
	return w
}

func (p *parser) duration(name string) time.Duration {
	s := p.str(name)
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		p.errs = append(p.errs, fmt.Errorf("%s: must be a positive duration such as 30s, got %.40q", name, s))
		return 0
	}
	return d
}

func (p *parser) level(name string) slog.Level {
	s := p.str(name)
	if s == "" {
		return slog.LevelInfo
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		p.errs = append(p.errs, fmt.Errorf("%s: must be debug, info, warn or error, got %.40q", name, s))
		return slog.LevelInfo
	}
	if l > slog.LevelError {
		// slog takes offsets ("warn+2"); one past error would hide every
		// line, the reason of a failed start included.
		p.errs = append(p.errs, fmt.Errorf("%s: at most error (a higher level hides the errors too), got %.40q", name, s))
		return slog.LevelInfo
	}
	return l
}

// validDomainSuffix reports whether s, without its leading dot, is
// dot-separated DNS labels (letters, digits, '-', '_').
func validDomainSuffix(s string) bool {
	for label := range strings.SplitSeq(strings.TrimPrefix(s, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// validHeaderName reports whether s is an HTTP header name (an RFC 9110
// token).
func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

// DefaultTenantDBMaxTasks is TENANT_DB_MAX_TASKS's default for a worker
// running concurrency tasks at once: all but a quarter of them, so that
// at least one slot stays for the tenants of other databases (with one
// slot: that slot).
func DefaultTenantDBMaxTasks(concurrency int) int {
	return max(1, concurrency-max(1, concurrency/4))
}
