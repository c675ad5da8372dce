package backend_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/backend"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// TestEnqueueAutoPipelining enqueues from many goroutines at once through
// Backend.Enqueuer, with and without autopipelining, on a Redis server of
// its own: every task lands exactly once either way, and with
// autopipelining the burst shares a few connections (pipelines) instead
// of taking one pooled connection per concurrent enqueue.
func TestEnqueueAutoPipelining(t *testing.T) {
	t.Parallel()
	for _, autopipeline := range []bool{true, false} {
		t.Run(fmt.Sprintf("autopipeline=%v", autopipeline), func(t *testing.T) {
			t.Parallel()
			rs := testenv.StartRedis(t, testenv.RedisOptions{})
			e := env(t)
			e["REDIS_URL"] = rs.URL()
			// The plain path: every task lands in asynq's queue at once
			// (fair dispatch would keep most in the tenants' backlogs).
			e["FAIR_DISPATCH"] = "false"
			cfg, err := config.FromEnv(getenv(e))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			deps, err := backend.Open(ctx, cfg, quietLogger(), backend.Options{AutoPipeline: autopipeline})
			if err != nil {
				t.Fatal(err)
			}
			defer deps.Close()

			opened := func() int {
				t.Helper()
				return connectionsReceived(t, deps.Redis)
			}
			before := opened()
			const n = 400
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := range n {
				wg.Go(func() {
					p := tasks.InvoicePDF{TenantID: "t" + strconv.Itoa(i%7), InvoiceID: int64(i + 1)}
					if _, err := deps.Enqueuer.Enqueue(ctx, p); err != nil {
						errs <- err
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("enqueue: %v", err)
			}
			newConns := opened() - before

			q, err := deps.Inspector.GetQueueInfo(tasks.QueueDefault)
			if err != nil {
				t.Fatal(err)
			}
			if q.Pending != n {
				t.Fatalf("%d tasks pending, want %d", q.Pending, n)
			}
			// Each task id once: the same ids again are all conflicts that
			// resolve to the pending tasks (KeepExisting), adding none.
			for i := range 20 {
				p := tasks.InvoicePDF{TenantID: "t" + strconv.Itoa(i%7), InvoiceID: int64(i + 1)}
				res, err := deps.Enqueuer.Enqueue(ctx, p)
				if err != nil || !res.Existing || res.Info.State != asynq.TaskStatePending {
					t.Fatalf("re-enqueue %d: %+v, %v", i, res, err)
				}
			}
			if q, _ := deps.Inspector.GetQueueInfo(tasks.QueueDefault); q.Pending != n {
				t.Fatalf("%d tasks pending after re-enqueue, want %d", q.Pending, n)
			}
			t.Logf("%d concurrent enqueues opened %d Redis connections", n, newConns)
			if autopipeline && newConns > 4 {
				t.Errorf("autopipelined burst opened %d connections, want a few shared pipeline connections", newConns)
			}
		})
	}
}

// connectionsReceived returns the server's total_connections_received.
func connectionsReceived(t *testing.T, rc redis.UniversalClient) int {
	t.Helper()
	info, err := rc.Info(context.Background(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "total_connections_received:"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no total_connections_received in INFO stats:\n%s", info)
	return 0
}

func TestMain(m *testing.M) { os.Exit(testenv.MainLeakCheck(m)) }

// env is one test's environment variables on fresh servers.
func env(t *testing.T) map[string]string {
	t.Helper()
	return map[string]string{
		"DATABASE_URL":  testenv.Postgres(t),
		"REDIS_URL":     testenv.RedisURL(t),
		"DOCUMENTS_DIR": t.TempDir(),
	}
}

func getenv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestOpenMigratesCatalogOnSchemaPool: Open migrates the catalog once, on
// the schema pool (MIGRATIONS_DATABASE_URL when it differs), and everything
// it builds works on the result.
func TestOpenMigratesCatalogOnSchemaPool(t *testing.T) {
	t.Parallel()
	e := env(t)
	u, err := url.Parse(e["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", "migrations")
	u.RawQuery = q.Encode()
	e["MIGRATIONS_DATABASE_URL"] = u.String()
	cfg, err := config.FromEnv(getenv(e))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	b, err := backend.Open(ctx, cfg, quietLogger(), backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.SchemaPool == b.Pool {
		t.Fatal("MIGRATIONS_DATABASE_URL differs, but the schema pool is the application pool")
	}
	var version int
	if err := b.Pool.QueryRow(ctx, `SELECT max(version) FROM tenancy.schema_migrations`).Scan(&version); err != nil || version != storage.CatalogVersion() {
		t.Fatalf("catalog version %d (%v), want %d", version, err, storage.CatalogVersion())
	}
	p, err := b.Tenancy.Provision(ctx, tenancy.NewTenant{Slug: "acme"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Catalog.TenantByID(ctx, p.Tenant.ID); err != nil || got.Slug != "acme" {
		t.Fatalf("provisioned tenant through the cache: %+v, %v", got, err)
	}
}

// TestOpenErrorsName: start-up errors say what failed.
func TestOpenErrorsName(t *testing.T) {
	t.Parallel()
	e := env(t)
	e["REDIS_URL"] = "redis://127.0.0.1:1"
	cfg, err := config.FromEnv(getenv(e))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backend.Open(context.Background(), cfg, quietLogger(), backend.Options{}); err == nil || !strings.Contains(err.Error(), "connect to redis") {
		t.Fatalf("Open with Redis down = %v, want a redis connection error", err)
	}
}

// TestQueueShardBoundsAgree: config validates QUEUE_SHARDS against its own
// copy of the bound (it does not import tasks), and Open builds the layout
// with tasks.NewLayout; the two bounds must be one number, or a value
// config accepts would stop Open (or the other way round).
func TestQueueShardBoundsAgree(t *testing.T) {
	t.Parallel()
	if config.MaxQueueShards != tasks.MaxQueueShards {
		t.Fatalf("config.MaxQueueShards %d, tasks.MaxQueueShards %d", config.MaxQueueShards, tasks.MaxQueueShards)
	}
	if _, err := tasks.NewLayout(config.MaxQueueShards, 0); err != nil {
		t.Fatalf("the largest count config accepts: %v", err)
	}
}
