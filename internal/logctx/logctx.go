// Package logctx carries log attributes in a context.Context and adds them
// to the records logged with that context.
//
// The worker's Log middleware puts a task's task_id, task_type and
// tenant_id into the ctx it hands on (With). The binaries' loggers are
// built on Handler, which adds those attributes to every record logged
// with such a ctx: the lines of the components that hold the process's own
// *slog.Logger (the tenant service, the tenant cache, the enqueuer, the
// tenant database registry) carry the task's attributes when they log on a
// task's path, through the ...Context and LogAttrs methods, without a
// logger handed down to them. The enqueue service puts each request's
// request_id into its ctx the same way. A record logged with a ctx that
// carries nothing (the CLI's, a worker's outside a task) is passed on
// unchanged.
package logctx

import (
	"context"
	"log/slog"
	"slices"
)

// attrsKey is unexported so no other package can read or overwrite the value.
type attrsKey struct{}

// With returns a copy of ctx carrying attrs after those ctx carries already.
func With(ctx context.Context, attrs ...slog.Attr) context.Context {
	if len(attrs) == 0 {
		return ctx
	}
	prev := Attrs(ctx)
	all := make([]slog.Attr, 0, len(prev)+len(attrs))
	all = append(append(all, prev...), attrs...)
	return context.WithValue(ctx, attrsKey{}, all)
}

// Attrs returns the attributes ctx carries (With), nil if none. The slice
// must not be modified.
func Attrs(ctx context.Context) []slog.Attr {
	attrs, _ := ctx.Value(attrsKey{}).([]slog.Attr)
	return attrs
}

// Handler returns a handler that passes each record to h with the
// attributes its ctx carries first, then the record's own. An attribute is
// left out when the logger (slog.Logger.With) or the record names its key
// already at the top level, so that each key appears once and a line about
// another task (one the handler enqueues, with its own task_id) keeps that
// task's. In a group opened by WithGroup, the attributes land in the
// group. Handler of a handler it returned returns it unchanged.
func Handler(h slog.Handler) slog.Handler {
	if c, ok := h.(*ctxHandler); ok {
		return c
	}
	return &ctxHandler{inner: h}
}

// ctxHandler is the handler Handler returns.
type ctxHandler struct {
	inner slog.Handler
	// named are the top-level keys of the attributes the logger was given
	// (WithAttrs before any group).
	named []string
	// grouped is set once WithGroup opened a group.
	grouped bool
}

// Enabled implements slog.Handler.
func (h *ctxHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle implements slog.Handler.
func (h *ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	attrs := Attrs(ctx)
	if len(attrs) == 0 {
		return h.inner.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	for _, a := range attrs {
		if !slices.Contains(h.named, a.Key) && !names(r, a.Key) {
			out.AddAttrs(a)
		}
	}
	if out.NumAttrs() == 0 {
		return h.inner.Handle(ctx, r)
	}
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(a)
		return true
	})
	return h.inner.Handle(ctx, out)
}

// names reports whether r has an attribute with key at the top level.
func names(r slog.Record, key string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == key
		return !found
	})
	return found
}

// WithAttrs implements slog.Handler.
func (h *ctxHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	named := h.named
	if !h.grouped {
		named = slices.Clip(named)
		for _, a := range attrs {
			named = append(named, a.Key)
		}
	}
	return &ctxHandler{inner: h.inner.WithAttrs(attrs), named: named, grouped: h.grouped}
}

// WithGroup implements slog.Handler.
func (h *ctxHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &ctxHandler{inner: h.inner.WithGroup(name), named: h.named, grouped: true}
}
