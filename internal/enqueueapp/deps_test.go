package enqueueapp_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
)

// TestEnqueueAutoPipelining enqueues from many goroutines at once through
// Deps.Enqueuer, with and without REDIS_AUTOPIPELINE, on a Redis server of
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
			e["REDIS_AUTOPIPELINE"] = strconv.FormatBool(autopipeline)
			cfg, err := config.FromEnv(getenv(e))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			deps, err := enqueueapp.Open(ctx, cfg, quietLogger(), enqueueapp.Options{})
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
