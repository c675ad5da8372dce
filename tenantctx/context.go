package tenantctx

import "context"

// ctxKey is unexported so no other package can read or overwrite the value.
type ctxKey struct{}

// WithTenant returns a copy of ctx carrying t.
func WithTenant(ctx context.Context, t Tenant) context.Context {
	return context.WithValue(ctx, ctxKey{}, t)
}

// FromContext returns the tenant carried by ctx, if any. A zero Tenant
// stored in ctx is reported as absent: there is no default tenant.
func FromContext(ctx context.Context) (Tenant, bool) {
	t, ok := ctx.Value(ctxKey{}).(Tenant)
	if !ok || t.ID == "" {
		return Tenant{}, false
	}
	return t, true
}

// MustFromContext returns the tenant carried by ctx and panics without one.
// Use it only where middleware guarantees a tenant.
func MustFromContext(ctx context.Context) Tenant {
	t, ok := FromContext(ctx)
	if !ok {
		panic("tenantctx: no tenant in context")
	}
	return t
}
