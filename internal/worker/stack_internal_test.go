package worker

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/shopspring/decimal"

	"github.com/invoicing/tenantworker/pdf"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// BenchmarkTaskStack runs a task through the production chain on a new
// goroutine per attempt, as asynq does, with a handler that renders a
// 10-line invoice (the deepest part of a PDF attempt; no database, no
// store): "grown" is the chain as it is (growTaskStack first), "doubling"
// the same chain with a first middleware that does not grow the stack, so
// that it doubles under the handler. The difference is the stack copies.
func BenchmarkTaskStack(b *testing.B) {
	ctx := context.Background()
	catalog := memstore.New()
	tn, err := tenantctx.New("stack-co", "Stack Co", "pro")
	if err != nil {
		b.Fatal(err)
	}
	if tn, err = catalog.CreateTenant(ctx, tn); err != nil {
		b.Fatal(err)
	}
	if tn, err = catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
		b.Fatal(err)
	}
	lines := make([]pdf.Line, 10)
	for i := range lines {
		lines[i] = pdf.Line{Description: "Consulting, phase " + string(rune('A'+i)), Quantity: decimal.NewFromInt(int64(i + 1)), UnitPrice: decimal.New(12050, -2)}
	}
	inv := pdf.Invoice{TenantName: "Stack Co Łódź", Number: "INV-1", Currency: "EUR", Status: "sent",
		IssuedAt: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), DueAt: time.Date(2026, 3, 31, 0, 0, 0, 0, time.UTC),
		Customer: pdf.Customer{Name: "Zoë Müller", Address: "Hauptstraße 1\n10115 Berlin"}, Lines: lines}
	render := Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
		_, err := pdf.Render(ctx, io.Discard, inv)
		return err
	})
	opts := MuxOptions{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Catalog: catalog}
	doubling := func(next asynq.Handler) asynq.Handler { // DecodeEnvelope without growTaskStack
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			return next.ProcessTask(context.WithValue(ctx, envelopeKey{}, openEnvelope(t)), t)
		})
	}
	task := asynq.NewTask(tasks.TypeInvoicePDF, []byte(`{"tenant_id":"`+tn.ID+`","invoice_id":42}`))
	for _, bc := range []struct {
		name  string
		first asynq.MiddlewareFunc
	}{{"doubling", doubling}, {"grown", DecodeEnvelope()}} {
		chain := Chain(opts)
		chain[0] = bc.first
		mux := asynq.NewServeMux()
		mux.Use(chain...)
		mux.Handle(tasks.TypeInvoicePDF, render)
		b.Run(bc.name, func(b *testing.B) {
			errc := make(chan error)
			for b.Loop() {
				go func() { errc <- mux.ProcessTask(ctx, task) }()
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
