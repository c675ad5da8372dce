// Package workertest runs task payloads through the worker's production
// chain in tests, without Redis or an asynq server: DecodeEnvelope,
// Recover, Log, Metrics, RefuseInvalid, ResolveTenant and the typed
// adapter, exactly as worker.NewServeMux builds them, in front of the real
// handlers. Handler tests use it instead of building a handler's context by
// hand, so what they test is what production runs.
//
//	w := workertest.New(handlers, worker.MuxOptions{Logger: logger})
//	err := w.Work(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1})
//
// A task run this way has no asynq task id, queue or retry count in its
// context, and no result writer: handlers skip writing their result.
package workertest

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/tasks"
)

// Worker runs payloads through the production mux of a set of handlers.
type Worker struct {
	mux *asynq.ServeMux
}

// New returns a Worker over worker.NewServeMux(h, opts). opts.Catalog
// defaults to h.Catalog, as in NewServeMux.
func New(h *worker.Handlers, opts worker.MuxOptions) *Worker {
	return &Worker{mux: worker.NewServeMux(h, opts)}
}

// Work validates p as the Enqueuer does before enqueueing it, encodes it
// the same way and runs it through the chain. It returns what the chain
// returns: nil, an archived task's error (asynq.SkipRetry), a waiting
// task's (worker.ErrTenantNotReady), or an error asynq would retry.
func (w *Worker) Work(ctx context.Context, p tasks.Payload) error {
	if err := tasks.Validate(p); err != nil {
		return err
	}
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode %s payload: %w", p.TypeName(), err)
	}
	return w.WorkRaw(ctx, p.TypeName(), data)
}

// WorkRaw runs a task of type typ with the raw payload through the chain,
// for payloads no producer would enqueue (hostile, malformed, unknown).
func (w *Worker) WorkRaw(ctx context.Context, typ string, payload []byte) error {
	return w.mux.ProcessTask(ctx, asynq.NewTask(typ, payload))
}
