// Package schema owns the lifecycle of tenant schemas and schema-pinned
// database access.
//
// Lifecycle: Create, Migrate (embedded SQL migrations, each tenant schema
// records its own version, serialized per tenant by a lock keyed by that
// tenant) and Drop. Every schema name is validated with
// tenantctx.ValidateSchema and quoted with pgx.Identifier before use.
//
// Access: NewPool configures a pool whose connections have an empty
// search_path and whose AfterRelease proves a connection clean or destroys
// it. InTenant is the one way to run tenant queries: it takes the tenant from
// ctx, opens a transaction and pins search_path to the tenant's schema with
// set_config(..., true) (SET LOCAL), so the pin ends with the transaction,
// also behind PgBouncer in transaction pooling mode.
package schema
