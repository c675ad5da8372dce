// Package placement is the one home of "which PostgreSQL server holds a
// tenant": the pool registry that maps the catalog's tenant databases
// (storage.PlacementStore; "main" is DATABASE_URL) to connection pools,
// opened lazily on first use, one bounded pool per database, each built by
// schema.NewPool (empty search_path, connections verified clean on
// release); and the choice of a database for a new tenant (the least
// loaded, or the operator's). Workers, the enqueue service and the tenant
// lifecycle reach a tenant's schema through Registry.ForTenant; moving a
// tenant between databases is internal/tenancy's (Service.Move) on top of
// this package. See docs/architecture.md.
package placement
