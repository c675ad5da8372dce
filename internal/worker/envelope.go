package worker

import (
	"context"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// Envelope is what every task carries besides its own fields: its type and,
// for a tenant task, its tenant id. DecodeEnvelope reads it once per task;
// the rest of the chain reads it from ctx.
type Envelope struct {
	// Type is the task's type as queued.
	Type string
	// Known is true when Type is a registered task type.
	Known bool
	// System is true for a registered type without a tenant
	// (tasks.IsSystemType).
	System bool
	// Activity is what a task of this type does to its tenant, for the
	// status policy.
	Activity tenantctx.Activity
	// NeedsCatalog is true for a type whose handler uses the catalog on
	// "main" besides its tenant's database (tasks.Spec.NeedsCatalog).
	NeedsCatalog bool
	// TenantID is the payload's tenant_id, checked with
	// tenantctx.ValidateID; "" for a system task or when it is unusable.
	TenantID string
	// Err says why the task cannot run (an unknown type, a tenant task
	// without a valid tenant_id); RefuseInvalid archives it. Nil otherwise.
	Err error
}

// envelopeKey carries the Envelope in a handler's ctx.
type envelopeKey struct{}

// typeFacts are what the chain needs to know about a registered type.
type typeFacts struct {
	system       bool
	activity     tenantctx.Activity
	needsCatalog bool
}

// registered indexes tasks.Types once.
var registered = func() map[string]typeFacts {
	m := make(map[string]typeFacts)
	for _, p := range tasks.Types() {
		spec := p.Spec()
		m[p.TypeName()] = typeFacts{system: tasks.IsSystemType(p.TypeName()), activity: spec.Activity, needsCatalog: spec.NeedsCatalog}
	}
	return m
}()

// openEnvelope reads the envelope of a task: its type and, unless it is a
// system task, the tenant_id of its payload (only that field is decoded).
func openEnvelope(t *asynq.Task) Envelope {
	env := Envelope{Type: t.Type()}
	facts, known := registered[env.Type]
	env.Known, env.System, env.Activity, env.NeedsCatalog = known, facts.system, facts.activity, facts.needsCatalog
	if env.System {
		return env
	}
	id, err := tasks.OwnerOf(t.Payload())
	if err == nil {
		env.TenantID = id
	}
	switch {
	case !known:
		env.Err = fmt.Errorf("unknown task type %.100q: no handler in this worker version (archived; run it again from the dashboard after deploying a worker that handles it)", env.Type)
	case err != nil:
		env.Err = fmt.Errorf("%s task refused: %w", env.Type, err)
	}
	return env
}

// DecodeEnvelope is the first middleware: it opens the task's envelope and
// puts it into ctx for the rest of the chain. It refuses nothing itself, so
// that a refused task is still recovered, logged and counted;
// RefuseInvalid archives it further down.
//
// It first grows the attempt's goroutine stack to what a PDF attempt
// needs (32 KiB) in one step, while it is shallow, instead of letting it
// double under the handler (growTaskStack).
func DecodeEnvelope() asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			_ = growTaskStack()
			return next.ProcessTask(context.WithValue(ctx, envelopeKey{}, openEnvelope(t)), t)
		})
	}
}

// EnvelopeFromContext returns the envelope DecodeEnvelope put into ctx.
func EnvelopeFromContext(ctx context.Context) (Envelope, bool) {
	env, ok := ctx.Value(envelopeKey{}).(Envelope)
	return env, ok
}

// envelopeOf returns ctx's envelope, or opens t's when the chain did not
// (a middleware tested on its own).
func envelopeOf(ctx context.Context, t *asynq.Task) Envelope {
	if env, ok := EnvelopeFromContext(ctx); ok {
		return env
	}
	return openEnvelope(t)
}

// RefuseInvalid archives (asynq.SkipRetry) a task whose envelope is
// unusable, with the reason, instead of letting asynq retry it:
//
//   - a type no handler knows (asynq would retry "handler not found" 25
//     times over days). That includes a type that only shares a prefix with
//     a registered one: asynq's mux matches patterns by prefix, so
//     "invoice:pdfx" would otherwise reach the invoice:pdf handler. An
//     archived task is kept: after deploying a worker that knows the type,
//     an operator can run it again from the dashboard;
//   - a tenant task whose payload is not a JSON object, or whose tenant_id
//     is missing, null, not a string, empty or not a valid tenant id.
//
// Both are refused before any tenant lookup.
func RefuseInvalid() asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			if env := envelopeOf(ctx, t); env.Err != nil {
				return Permanent(env.Err)
			}
			return next.ProcessTask(ctx, t)
		})
	}
}
