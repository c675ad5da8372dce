package fair_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// BenchmarkDrain drains no-op tasks of ten tenants through a real asynq
// server (concurrency 10, 20 ms idle poll) on a real redis-server, plain
// (enqueued with asynq.Client) and fair (enqueued into the backlogs,
// admitted by completion reports and heartbeats). It reports tasks/s and,
// per task, the CPU time of redis-server and of this process and the
// commands Redis ran (those inside scripts included), which is where the
// dispatcher's cost shows.
//
// Run with the server serving "default" alone and serving the worker's
// three queue classes (critical, default and low, weighted 6/3/1, the work
// all in default): asynq's dequeue tries the served queues one script at a
// time until one has a task, so the empty classes cost every task.
func BenchmarkDrain(b *testing.B) {
	const tasksPerOp = 3000
	served := map[string]map[string]int{
		"one-queue":     {"default": 1},
		"three-classes": {"critical": 6, "default": 3, "low": 1},
	}
	for _, mode := range []string{"plain", "fair"} {
		for _, queues := range []string{"one-queue", "three-classes"} {
			b.Run(mode+"/"+queues, func(b *testing.B) {
				rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(b), PoolSize: 40})
				b.Cleanup(func() { _ = rdb.Close() })
				ctx := context.Background()
				var elapsed, redisCPU, selfCPU time.Duration
				var cmds int64
				for range b.N {
					if err := rdb.FlushAll(ctx).Err(); err != nil {
						b.Fatal(err)
					}
					d := fair.New(rdb, fair.Config{})
					if mode == "plain" {
						cl := asynq.NewClientFromRedisClient(rdb)
						for i := range tasksPerOp {
							if _, err := cl.Enqueue(asynq.NewTask("invoice:pdf", []byte(`{}`)), asynq.TaskID(fmt.Sprintf("t%d", i)), asynq.Retention(time.Hour)); err != nil {
								b.Fatal(err)
							}
						}
					} else {
						const nt = 10
						for tn := range nt {
							tenant := fmt.Sprintf("tn_b%d", tn)
							for i := 0; i < tasksPerOp/nt; i += 50 {
								batch := make([]fair.Task, 0, 50)
								for j := i; j < i+50; j++ {
									tk := task(tenant, j)
									tk.Message.Queue = "default"
									batch = append(batch, tk)
								}
								if _, err := d.Enqueue(ctx, tenant, fair.Policy{Weight: 1}, batch); err != nil {
									b.Fatal(err)
								}
							}
						}
					}
					u0, s0 := testenv.ReadRedisUsage(b, rdb), testenv.ProcessCPU()
					e, err := drain(ctx, rdb, d, mode == "fair", served[queues], tasksPerOp)
					if err != nil {
						b.Fatal(err)
					}
					elapsed += e
					u := testenv.ReadRedisUsage(b, rdb).Sub(u0)
					redisCPU += u.CPU
					cmds += u.Commands
					selfCPU += testenv.ProcessCPU() - s0
				}
				n := float64(b.N * tasksPerOp)
				b.ReportMetric(n/elapsed.Seconds(), "tasks/s")
				b.ReportMetric(float64(redisCPU.Microseconds())/n, "redis-µs/task")
				b.ReportMetric(float64(selfCPU.Microseconds())/n, "go-µs/task")
				b.ReportMetric(float64(cmds)/n, "cmds/task")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// drain runs an asynq server serving queues until n tasks were handled.
func drain(ctx context.Context, rdb *redis.Client, d *fair.Dispatcher, useFair bool, queues map[string]int, n int) (time.Duration, error) {
	var left atomic.Int64
	left.Store(int64(n))
	done := make(chan struct{})
	var rep *fair.Reporter
	mctx, stop := context.WithCancel(ctx)
	var member sync.WaitGroup
	if useFair {
		rep = d.NewReporter(nil)
		member.Go(func() {
			d.Serve(mctx, fair.Membership{ID: "bench", Queues: slices.Sorted(maps.Keys(queues)), Concurrency: 10, Interval: 200 * time.Millisecond}, nil)
		})
	}
	mux := asynq.NewServeMux()
	mux.HandleFunc("invoice:pdf", func(ctx context.Context, t *asynq.Task) error {
		start := time.Now()
		if rep != nil {
			id, _ := asynq.GetTaskID(ctx)
			rep.Report(fair.Report{Queue: "default", TaskID: id, TenantID: tenantOf(id), Type: t.Type(), Cost: time.Since(start)})
		}
		if left.Add(-1) == 0 {
			close(done)
		}
		return nil
	})
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: 10, Queues: queues,
		TaskCheckInterval: 20 * time.Millisecond, LogLevel: asynq.FatalLevel})
	start := time.Now()
	if err := srv.Start(mux); err != nil {
		stop()
		return 0, err
	}
	var err error
	select {
	case <-done:
	case <-time.After(time.Minute):
		err = fmt.Errorf("%d of %d tasks not handled", left.Load(), n)
	}
	elapsed := time.Since(start)
	srv.Shutdown()
	stop()
	member.Wait()
	if rep != nil {
		rep.Close(ctx)
	}
	return elapsed, err
}
