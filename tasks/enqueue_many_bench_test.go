package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tenantctx"
)

// BenchmarkEnqueueMany enqueues invoice:pdf tasks of 100 tenants from 40
// goroutines: "bulk" through EnqueueMany with fair admission and task
// records, as the enqueue service wires them, 100 tasks a call (one bulk
// request's); "bare" asynq.Client.Enqueue, one task a call. It reports
// tasks/s and, per task, redis-server's CPU, this process's CPU and the
// commands Redis ran (those inside scripts included).
func BenchmarkEnqueueMany(b *testing.B) {
	const tenants, perCall, callers = 100, 100, 40
	for _, mode := range []string{"bare", "bulk"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			opt := newRedis(b)
			rdb := redis.NewClient(&redis.Options{Addr: opt.Addr, PoolSize: 80})
			b.Cleanup(func() { _ = rdb.Close() })
			catalog := memstore.New()
			ids := make([]string, tenants)
			for i := range tenants {
				tn, err := tenantctx.New(fmt.Sprintf("bench-%d", i), "Bench", "free")
				if err != nil {
					b.Fatal(err)
				}
				tn.Status = tenantctx.StatusActive
				if tn, err = catalog.CreateTenant(ctx, tn); err != nil {
					b.Fatal(err)
				}
				ids[i] = tn.ID
			}
			client := asynq.NewClientFromRedisClient(rdb)
			enq := NewEnqueuer(client, asynq.NewInspectorFromRedisClient(rdb), discardLogger(),
				WithAdmission(Admission{Dispatcher: fair.New(rdb, fair.Config{}), Tenants: catalog})).
				WithTaskRecords(NewTaskRecords(rdb, TaskRecordsOptions{}))
			var elapsed, redisCPU, selfCPU time.Duration
			var cmds, total int64
			base := int64(1)
			for range b.N {
				calls := tenants * 20 // 200,000 tasks a round
				u0, s0, start := testenv.ReadRedisUsage(b, rdb), testenv.ProcessCPU(), time.Now()
				var next atomic.Int64
				var wg sync.WaitGroup
				var failed atomic.Pointer[error] // the first error
				for range callers {
					wg.Go(func() {
						for {
							j := next.Add(1) - 1
							if j >= int64(calls) {
								return
							}
							tn := ids[j%tenants]
							first := base + (j/tenants)*perCall
							if mode == "bare" {
								for k := range int64(perCall) {
									p := InvoicePDF{TenantID: tn, InvoiceID: first + k}
									data, _ := json.Marshal(p)
									if _, err := client.Enqueue(asynq.NewTask(p.TypeName(), data, p.Spec().Options()...)); err != nil {
										failed.CompareAndSwap(nil, &err)
										return
									}
								}
								continue
							}
							batch := make([]Payload, perCall)
							for k := range batch {
								batch[k] = InvoicePDF{TenantID: tn, InvoiceID: first + int64(k)}
							}
							if _, err := enq.EnqueueMany(ctx, tn, batch); err != nil {
								failed.CompareAndSwap(nil, &err)
								return
							}
						}
					})
				}
				wg.Wait()
				if err := failed.Load(); err != nil {
					b.Fatal(*err)
				}
				elapsed += time.Since(start)
				u := testenv.ReadRedisUsage(b, rdb).Sub(u0)
				redisCPU += u.CPU
				cmds += u.Commands
				selfCPU += testenv.ProcessCPU() - s0
				total += int64(calls * perCall)
				base += int64(calls/tenants) * perCall
				if err := rdb.FlushAll(ctx).Err(); err != nil {
					b.Fatal(err)
				}
			}
			n := float64(total)
			b.ReportMetric(n/elapsed.Seconds(), "tasks/s")
			b.ReportMetric(float64(redisCPU.Microseconds())/n, "redis-µs/task")
			b.ReportMetric(float64(selfCPU.Microseconds())/n, "go-µs/task")
			b.ReportMetric(float64(cmds)/n, "cmds/task")
			b.ReportMetric(0, "ns/op")
		})
	}
}
