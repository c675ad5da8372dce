package storage

import "context"

// loadGateKey is the context key of WithLoadGate.
type loadGateKey struct{}

// WithLoadGate returns ctx with gate, which a Cache calls before a look-up
// made with ctx asks its backend (the entry is in neither the local layer
// nor Redis): an error of gate is the look-up's, and the backend is not
// asked. A look-up either layer answers never calls it. The worker's
// circuit breaker of "main" is such a gate: a tenant look-up the cache
// cannot answer is held, not dialed, while "main" is known to be down
// (P27 in docs/architecture.md). Concurrent misses of one key share one
// load (Cache.lookup), so a caller that joins a load gets the answer of
// the gate of the caller that started it.
func WithLoadGate(ctx context.Context, gate func(ctx context.Context) error) context.Context {
	return context.WithValue(ctx, loadGateKey{}, gate)
}

// PassLoadGate calls the gate of ctx (WithLoadGate), if any, and returns
// its error; nil without a gate. A Cache calls it before each look-up it
// sends to its backend; another reader of the catalog does as well before
// a read that a gate should hold (placement.Registry, before it reads the
// catalog's database list to open a tenant database's pool): its ctx is
// then its caller's, not a shared load's.
func PassLoadGate(ctx context.Context) error {
	if gate, ok := ctx.Value(loadGateKey{}).(func(context.Context) error); ok && gate != nil {
		return gate(ctx)
	}
	return nil
}
