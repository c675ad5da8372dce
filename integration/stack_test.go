package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// Settings every stack shares.
const (
	domainSuffix = ".example.test"
	adminToken   = "integration-admin-token-0123456789"
)

// stackOptions shapes one test's system: how many workers, how they reach
// PostgreSQL, which servers they use.
type stackOptions struct {
	// workers is the number of worker processes (default 1).
	workers int
	// concurrency is WORKER_CONCURRENCY (default 4); dbMaxConns is
	// DB_MAX_CONNS (default concurrency).
	concurrency, dbMaxConns int
	// bouncer puts PgBouncer (transaction mode, bouncerPool server
	// connections, default 4) between every process and PostgreSQL.
	// MIGRATIONS_DATABASE_URL stays direct.
	bouncer     bool
	bouncerPool int
	// postgres is a dedicated server (fault tests); nil uses the shared one.
	postgres *testenv.PostgresServer
	// redis is a dedicated server; nil starts one without persistence.
	redis *testenv.RedisServer
	// cluster, when set, is the Redis of the stack instead (REDIS_URL
	// redis-cluster://...).
	cluster *testenv.RedisCluster
	// sweepCron is OVERDUE_SWEEP_CRON; "" disables the scheduler.
	sweepCron string
	// shutdownTimeout is SHUTDOWN_TIMEOUT (default 10s).
	shutdownTimeout time.Duration
	// noEnqueue skips the enqueue service.
	noEnqueue bool
	// env is merged into every process's environment last.
	env map[string]string
	// workerEnv, when set, adds to the environment of worker i.
	workerEnv func(i int) map[string]string
}

// stack is one test's running system: PostgreSQL database, Redis, optional
// PgBouncer, the enqueue service and worker processes, and the test's own
// direct connections for seeding and checking.
type stack struct {
	t         testing.TB
	opts      stackOptions
	directURL string               // superuser URL of the app database, direct
	appURL    string               // DATABASE_URL of the processes
	redis     *testenv.RedisServer // nil on a cluster
	redisURL  string
	rdb       redis.UniversalClient // the test's own client
	bouncer   *pgBouncer
	docsDir   string
	db        *pgxpool.Pool // the test's own direct pool
	inspector *asynq.Inspector
	enqueue   *proc
	workers   []*proc
	outboxes  []string // OUTBOX_DIR of each worker
}

// newStack starts the servers and processes of opts and waits until every
// process answers /readyz with 200.
func newStack(t testing.TB, opts stackOptions) *stack {
	t.Helper()
	if opts.workers == 0 {
		opts.workers = 1
	}
	if opts.concurrency == 0 {
		opts.concurrency = 4
	}
	if opts.dbMaxConns == 0 {
		opts.dbMaxConns = opts.concurrency
	}
	if opts.bouncerPool == 0 {
		opts.bouncerPool = 4
	}
	if opts.shutdownTimeout == 0 {
		opts.shutdownTimeout = 10 * time.Second
	}
	s := &stack{t: t, opts: opts}

	// Binaries first: a build failure is the clearest message.
	workerBin := testenv.BuildBinary(t, workerPkg)
	var enqueueBin string
	if !opts.noEnqueue {
		enqueueBin = testenv.BuildBinary(t, enqueuePkg)
	}

	if opts.postgres != nil {
		s.directURL = opts.postgres.CreateDatabase(t)
	} else {
		s.directURL = testenv.Postgres(t)
	}
	s.appURL = s.directURL
	if opts.bouncer {
		emptySearchPathDefault(t, s.directURL)
		s.bouncer = startPgBouncer(t, s.directURL, opts.bouncerPool)
		s.appURL = s.bouncer.url(databaseName(t, s.directURL))
	}
	if opts.cluster != nil {
		s.redisURL = opts.cluster.URL()
	} else {
		s.redis = opts.redis
		if s.redis == nil {
			s.redis = testenv.StartRedis(t, testenv.RedisOptions{})
		}
		s.redisURL = s.redis.URL()
	}
	redisOpt, err := config.ParseRedisURL(s.redisURL)
	if err != nil {
		t.Fatalf("parse REDIS_URL %s: %v", s.redisURL, err)
	}
	s.rdb = redisOpt.MakeRedisClient().(redis.UniversalClient)
	t.Cleanup(func() { _ = s.rdb.Close() })

	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(s.directURL)
	if err != nil {
		t.Fatalf("parse database url: %v", err)
	}
	cfg.MaxConns = 4
	if s.db, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		t.Fatalf("test pool: %v", err)
	}
	t.Cleanup(s.db.Close)
	s.inspector = asynq.NewInspectorFromRedisClient(s.rdb)
	t.Cleanup(func() { _ = s.inspector.Close() })

	s.docsDir = fastDir(t, "documents")

	// The enqueue service first: it applies the catalog migrations.
	if !opts.noEnqueue {
		s.enqueue = startProc(t, "enqueue", enqueueBin, s.env(nil), "serve")
		s.enqueue.waitReady()
	}
	for i := range opts.workers {
		s.addWorker(workerBin, i)
	}
	for _, w := range s.workers {
		w.waitReady()
	}
	return s
}

// env is the environment of a process of this stack.
func (s *stack) env(extra map[string]string) map[string]string {
	e := map[string]string{
		"DATABASE_URL":            s.appURL,
		"MIGRATIONS_DATABASE_URL": s.directURL,
		"REDIS_URL":               s.redisURL,
		"DOMAIN_SUFFIX":           domainSuffix,
		"ADMIN_TOKEN":             adminToken,
		"DOCUMENTS_DIR":           s.docsDir,
		"WORKER_CONCURRENCY":      strconv.Itoa(s.opts.concurrency),
		"DB_MAX_CONNS":            strconv.Itoa(s.opts.dbMaxConns),
		"SHUTDOWN_TIMEOUT":        s.opts.shutdownTimeout.String(),
		"LOG_FORMAT":              "json",
		"LOG_LEVEL":               "info",
		"MAIL_FROM":               "billing@invoicing.example.test",
		"SCHEDULER_ENABLED":       "false",
	}
	if s.opts.sweepCron != "" {
		e["SCHEDULER_ENABLED"] = "true"
		e["OVERDUE_SWEEP_CRON"] = s.opts.sweepCron
	}
	for k, v := range s.opts.env {
		e[k] = v
	}
	for k, v := range extra {
		e[k] = v
	}
	return e
}

// addWorker starts worker number i with its own outbox.
func (s *stack) addWorker(bin string, i int) *proc {
	s.t.Helper()
	outbox := fastDir(s.t, fmt.Sprintf("outbox-%d", i))
	extra := map[string]string{"OUTBOX_DIR": outbox}
	if s.opts.workerEnv != nil {
		for k, v := range s.opts.workerEnv(i) {
			extra[k] = v
		}
	}
	w := startProc(s.t, fmt.Sprintf("worker-%d", i), bin, s.env(extra))
	s.workers = append(s.workers, w)
	s.outboxes = append(s.outboxes, outbox)
	return w
}

// tenantRef is a tenant provisioned through the admin API.
type tenantRef struct {
	ID, Slug, Schema, Name, Key string
	// N is the tenant's number in its test, for markers in its data.
	N int
}

// host is the tenant's Host header.
func (tn tenantRef) host() string { return tn.Slug + domainSuffix }

// api calls the enqueue service.
func (s *stack) api(method, path, host, token string, body any) (int, []byte) {
	s.t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			s.t.Fatalf("encode body: %v", err)
		}
	}
	status, resp, err := httpDo(context.Background(), method, s.enqueue.url(path), host, token, b)
	if err != nil {
		s.t.Fatalf("%s %s (Host %s): %v", method, path, host, err)
	}
	return status, resp
}

// provision creates tenants through POST /admin/tenants and waits until the
// workers have migrated every one of them to active.
func (s *stack) provision(slugs []string, name func(i int) string) []tenantRef {
	s.t.Helper()
	out := make([]tenantRef, len(slugs))
	for i, slug := range slugs {
		status, body := s.api(http.MethodPost, "/admin/tenants", "", adminToken,
			map[string]string{"slug": slug, "name": name(i)})
		if status != http.StatusAccepted {
			s.t.Fatalf("provision %s: status %d, body %s", slug, status, body)
		}
		var r struct {
			ID     string `json:"id"`
			Slug   string `json:"slug"`
			APIKey string `json:"api_key"`
		}
		if err := json.Unmarshal(body, &r); err != nil || r.ID == "" || r.APIKey == "" {
			s.t.Fatalf("provision %s: body %s: %v", slug, body, err)
		}
		out[i] = tenantRef{ID: r.ID, Slug: r.Slug, Schema: "tenant_" + strings.ReplaceAll(slug, "-", "_"), Name: name(i), Key: r.APIKey, N: i}
	}
	ids := make([]string, len(out))
	for i, tn := range out {
		ids[i] = tn.ID
	}
	s.waitStatus(ids, "active", 120*time.Second)
	return out
}

// waitStatus waits until every tenant in ids has status in the catalog.
func (s *stack) waitStatus(ids []string, status string, timeout time.Duration) {
	s.t.Helper()
	eventually(s.t, timeout, 200*time.Millisecond, "tenants "+status, func() error {
		var n int
		err := s.db.QueryRow(context.Background(),
			`SELECT count(*) FROM tenancy.tenants WHERE id = ANY($1) AND status = $2`, ids, status).Scan(&n)
		if err != nil {
			return err
		}
		if n != len(ids) {
			return fmt.Errorf("%d of %d tenants %s", n, len(ids), status)
		}
		return nil
	})
}

// invoiceSeed describes the rows seed writes into one tenant's schema.
type invoiceSeed struct {
	// overdue invoices get ids 1..overdue (identical across tenants),
	// status overdue, due 10 days ago; sent invoices follow, status sent,
	// due 3 days ago (the sweep marks them overdue).
	overdue, sent int
	// lines per invoice.
	lines int
}

// Markers that make each tenant's data recognisable in PDFs and emails.
func tenantName(n int) string       { return fmt.Sprintf("Firma%02d Zoë GmbH", n) }
func customerName(n, c int) string  { return fmt.Sprintf("Kunde%02d-%d Müller", n, c) }
func customerEmail(n, c int) string { return fmt.Sprintf("kunde%d@firma%02d.example.test", c, n) }
func lineText(n, i, l int) string   { return fmt.Sprintf("Leistung%02d Nr. %d/%d Łódź", n, i, l) }

// customersPerTenant is how many customers each tenant has; invoice i
// belongs to customer i % customersPerTenant.
const customersPerTenant = 3

// seed writes customers, invoices and line items into tn's schema with
// explicit invoice ids, so every tenant has the same ids with different
// data, through schema.InTenant and the fixture builder invoice.Create.
func (s *stack) seed(tn tenantRef, sd invoiceSeed) {
	s.t.Helper()
	s.seedIn(s.db, tn, sd)
}

// seedIn is seed into the tenant's schema on pool's database (a tenant
// placed on another server).
func (s *stack) seedIn(pool *pgxpool.Pool, tn tenantRef, sd invoiceSeed) {
	s.t.Helper()
	ctx := tenantctx.WithTenant(context.Background(), tenantctx.Tenant{ID: tn.ID, Slug: tn.Slug, Schema: tn.Schema})
	currency := []string{"EUR", "USD", "JPY"}[tn.N%3]
	issued := time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC)
	err := schema.InTenant(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
		custIDs := make([]int64, customersPerTenant)
		for c := range customersPerTenant {
			id, err := invoice.CreateCustomer(ctx, tx, invoice.Customer{
				Name: customerName(tn.N, c), Company: fmt.Sprintf("Kundenfirma%02d AG", tn.N), Email: customerEmail(tn.N, c),
				Address: fmt.Sprintf("Straße %d\n%05d Stadt%02d", c+1, 10000+tn.N, tn.N),
			})
			if err != nil {
				return err
			}
			custIDs[c] = id
		}
		now := time.Now()
		total := sd.overdue + sd.sent
		invs := make([]invoice.New, 0, total)
		for i := 1; i <= total; i++ {
			status, due := "overdue", now.AddDate(0, 0, -10)
			if i > sd.overdue {
				status, due = "sent", now.AddDate(0, 0, -3)
			}
			lines := make([]invoice.Line, sd.lines)
			for l := 1; l <= sd.lines; l++ {
				lines[l-1] = invoice.Line{Description: lineText(tn.N, i, l),
					Quantity:  decimal.RequireFromString(fmt.Sprintf("%d.5", l)),
					UnitPrice: decimal.RequireFromString(fmt.Sprintf("%d.%02d", 10+tn.N, l%100))}
			}
			invs = append(invs, invoice.New{
				ID: int64(i), Number: fmt.Sprintf("INV-%05d", i), Customer: invoice.Customer{ID: custIDs[i%customersPerTenant]},
				Status: status, Currency: currency, IssuedAt: issued, DueAt: due, Notes: fmt.Sprintf("Notiz%02d", tn.N), Lines: lines,
			})
		}
		_, err := invoice.Create(ctx, tx, invs...)
		return err
	})
	if err != nil {
		s.t.Fatalf("seed %s: %v", tn.Slug, err)
	}
}

// queueCounts is the sum over the worker's queues.
type queueCounts struct {
	pending, active, scheduled, retry, archived, completed int
	processedTotal, failedTotal                            int
	// waiting tasks are in tenants' backlogs (fair dispatch), not yet in
	// asynq.
	waiting int
	// parked tasks were handed back to asynq while their tenant was held
	// (or at its running cap); the dispatcher keeps them until a release
	// or a heartbeat puts them back into the backlog, up to 45 s after the
	// park when the hand-back could still arrive.
	parked int
}

// unfinished is the number of tasks that still have to run.
func (c queueCounts) unfinished() int {
	return c.pending + c.active + c.scheduled + c.retry + c.waiting + c.parked
}

// layout is the queue layout of the stack's processes (QUEUE_SHARDS and
// QUEUE_SHARDS_SERVED of opts.env; one queue per class without them).
func (s *stack) layout() tasks.Layout {
	s.t.Helper()
	shards, _ := strconv.Atoi(s.opts.env["QUEUE_SHARDS"])
	served, _ := strconv.Atoi(s.opts.env["QUEUE_SHARDS_SERVED"])
	l, err := tasks.NewLayout(max(shards, 1), served)
	if err != nil {
		s.t.Fatalf("queue layout of the stack: %v", err)
	}
	return l
}

// counts sums the queue statistics over every queue of the stack's
// layout; a queue that does not exist yet counts as empty.
func (s *stack) counts() (queueCounts, error) {
	var c queueCounts
	queues := s.layout().Queues()
	for _, q := range queues {
		info, err := s.inspector.GetQueueInfo(q)
		if err != nil {
			if strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), "not found") {
				continue
			}
			return c, fmt.Errorf("queue %s: %w", q, err)
		}
		c.pending += info.Pending
		c.active += info.Active
		c.scheduled += info.Scheduled
		c.retry += info.Retry
		c.archived += info.Archived
		c.completed += info.Completed
		c.processedTotal += info.ProcessedTotal
		c.failedTotal += info.FailedTotal
	}
	for _, q := range queues {
		n, err := s.rdb.HLen(context.Background(), "fair:{"+q+"}:msg").Result()
		if err != nil {
			return c, fmt.Errorf("backlogs of %s: %w", q, err)
		}
		c.waiting += int(n)
		for _, set := range []string{"kept", "parked"} {
			tenants, err := s.rdb.SMembers(context.Background(), "fair:{"+q+"}:"+set+"t").Result()
			if err != nil {
				return c, fmt.Errorf("parked tasks of %s: %w", q, err)
			}
			for _, tn := range tenants {
				n, err := s.rdb.HLen(context.Background(), "fair:{"+q+"}:"+set+":"+tn).Result()
				if err != nil {
					return c, fmt.Errorf("parked tasks of %s: %w", q, err)
				}
				c.parked += int(n)
			}
		}
	}
	return c, nil
}

// waitDrained waits until no task is pending, active, scheduled, waiting
// to retry or parked by fair dispatch in any queue.
func (s *stack) waitDrained(timeout time.Duration) queueCounts {
	s.t.Helper()
	var last queueCounts
	eventually(s.t, timeout, 250*time.Millisecond, "queues drained", func() error {
		c, err := s.counts()
		if err != nil {
			return err
		}
		last = c
		if c.unfinished() > 0 {
			return fmt.Errorf("%+v", c)
		}
		return nil
	})
	return last
}

// parallel runs fn(i) for i in [0, n) on `workers` goroutines.
func parallel(n, workers int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// envInt reads a positive integer size knob from the environment.
func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}
