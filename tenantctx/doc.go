// Package tenantctx owns the tenant value and the rules that guard it: the
// Tenant type and its lifecycle statuses, slug, schema and id validation,
// resolving a slug from an HTTP Host header, and carrying the current tenant
// in a context.Context.
//
// It deliberately imports nothing from asynq, pgx or Redis: every other
// package (storage, schema, tasks, the HTTP API) depends on it, never the
// other way round.
//
// Validation always checks the input's length before running a regular
// expression, so a hostile 10 MB string costs nothing.
package tenantctx
