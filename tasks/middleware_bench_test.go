package tasks

import (
	"context"
	"log/slog"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// BenchmarkMiddleware compares calling a decoded handler directly with the
// full production chain Recover -> Log -> Metrics -> Tenant (in-memory
// catalog; a JSON logger writing to a discarding handler that is enabled, so
// the log line is really formatted).
func BenchmarkMiddleware(b *testing.B) {
	catalog := storage.NewMemory()
	tn := addTenant(b, catalog, "bench-co", tenantctx.StatusActive)
	payload := []byte(`{"tenant_id":"` + tn.ID + `","invoice_id":42}`)
	handler := Handle(func(context.Context, InvoicePDF) error { return nil })
	logger := slog.New(slog.NewJSONHandler(discardWriter{}, nil))
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	chain := Recover(logger)(Log(logger)(m.Middleware()(Tenant(catalog)(handler))))
	ctx := context.Background()

	for _, bc := range []struct {
		name string
		h    asynq.Handler
	}{{"bare", handler}, {"chain", chain}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.h.ProcessTask(ctx, asynq.NewTask(TypeInvoicePDF, payload)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
