package worker_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// BenchmarkMiddleware compares calling a decoded handler directly with the
// full production chain (worker.Chain: envelope, recover, log, metrics,
// refusal, tenant resolution; in-memory catalog; a JSON logger writing to a
// discarding handler that is enabled, so the log line is really formatted).
func BenchmarkMiddleware(b *testing.B) {
	catalog := memstore.New()
	tn := addTenant(b, catalog, "bench-co", tenantctx.StatusActive)
	payload := []byte(`{"tenant_id":"` + tn.ID + `","invoice_id":42}`)
	handler := worker.DecodeEnvelope()(worker.Handle(func(context.Context, tasks.InvoicePDF) error { return nil }))
	logger := slog.New(slog.NewJSONHandler(discardWriter{}, nil))
	m, err := worker.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	chain := worker.MuxOf(worker.MuxOptions{Logger: logger, Metrics: m, Catalog: catalog}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(context.Context, tasks.InvoicePDF) error { return nil }),
	})
	ctx := context.Background()

	for _, bc := range []struct {
		name string
		h    asynq.Handler
	}{{"bare", handler}, {"chain", chain}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.h.ProcessTask(ctx, asynq.NewTask(tasks.TypeInvoicePDF, payload)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkServerThroughput measures tasks per second through a real
// in-process asynq server on a real Redis, with a bare handler and with the
// production chain: b.N invoice:pdf tasks are enqueued, then processed.
func BenchmarkServerThroughput(b *testing.B) {
	for _, withChain := range []bool{false, true} {
		name := "bare"
		if withChain {
			name = "chain"
		}
		b.Run(name, func(b *testing.B) {
			redis := newRedis(b)
			catalog := memstore.New()
			tn := addTenant(b, catalog, "bench-co", tenantctx.StatusActive)
			client := asynq.NewClient(redis)
			defer client.Close()
			payload := []byte(`{"tenant_id":"` + tn.ID + `","invoice_id":42}`)
			for range b.N {
				if _, err := client.Enqueue(asynq.NewTask(tasks.TypeInvoicePDF, payload, asynq.Queue(tasks.QueueDefault))); err != nil {
					b.Fatal(err)
				}
			}
			done := make(chan struct{}, b.N)
			handler := worker.Handle(func(context.Context, tasks.InvoicePDF) error { done <- struct{}{}; return nil })
			h := worker.DecodeEnvelope()(handler)
			if withChain {
				logger := slog.New(slog.NewJSONHandler(discardWriter{}, nil))
				h = worker.MuxOf(worker.MuxOptions{Logger: logger, Catalog: catalog}, map[string]asynq.Handler{tasks.TypeInvoicePDF: handler})
			}
			b.ResetTimer()
			srv := asynq.NewServer(redis, worker.ServerConfig(worker.ServerOptions{Concurrency: 10, Logger: discardLogger()}))
			if err := srv.Start(h); err != nil {
				b.Fatal(err)
			}
			for range b.N {
				<-done
			}
			b.StopTimer()
			srv.Shutdown()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
		})
	}
}
