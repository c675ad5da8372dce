package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/tasks"
)

// resultWriterKey carries the task's asynq.ResultWriter in a handler's ctx.
type resultWriterKey struct{}

// Handle adapts a typed handler to asynq: it checks that the task's type is
// P's wire name, decodes the JSON payload into P (unknown fields are
// ignored for forward compatibility; wrong types are not), checks that a
// tenant payload's tenant is the one the envelope vouched for (the tenant
// id is checked once, by the envelope, not again), validates P's own fields
// (P.Validate), puts the task's result writer into ctx for WriteResult, and
// calls fn. A task of the wrong type, a payload that does not decode and an
// invalid payload are permanent failures (asynq.SkipRetry): retrying cannot
// fix them.
func Handle[P tasks.Payload](fn func(context.Context, P) error) asynq.Handler {
	var zero P
	want := zero.TypeName()
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		if t.Type() != want {
			return Permanentf("handler for %s got a task of type %.64q", want, t.Type())
		}
		var p P
		if err := json.Unmarshal(t.Payload(), &p); err != nil {
			return Permanent(fmt.Errorf("%w: decode %s payload: %w", tasks.ErrInvalidPayload, want, err))
		}
		if tp, ok := any(p).(tasks.TenantPayload); ok {
			env := envelopeOf(ctx, t)
			if env.Err != nil {
				return Permanent(env.Err)
			}
			if env.TenantID == "" || tp.Owner() != env.TenantID {
				return Permanentf("%s payload for tenant %.64q does not match its envelope", want, tp.Owner())
			}
		}
		if err := p.Validate(); err != nil {
			return Permanent(fmt.Errorf("%w: %s: %w", tasks.ErrInvalidPayload, want, err))
		}
		if w := t.ResultWriter(); w != nil {
			ctx = context.WithValue(ctx, resultWriterKey{}, w)
		}
		return fn(ctx, p)
	})
}

// WriteResult JSON-encodes v and stores it as the result of the task being
// handled, where GET /v1/tasks/{id} and the dashboard show it. It returns
// ErrNoResultWriter outside a handler registered through Handle.
func WriteResult(ctx context.Context, v any) error {
	// An *asynq.ResultWriter in production; tests put a recorder there.
	w, ok := ctx.Value(resultWriterKey{}).(io.Writer)
	if !ok || w == nil {
		return ErrNoResultWriter
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode task result: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		if rw, ok := w.(*asynq.ResultWriter); ok {
			return fmt.Errorf("write result of task %s: %w", rw.TaskID(), err)
		}
		return fmt.Errorf("write task result: %w", err)
	}
	return nil
}
