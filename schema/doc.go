// Package schema owns the lifecycle of tenant schemas and schema-pinned
// database access.
//
// Lifecycle: Migrate (creates the schema if missing, then applies the
// embedded SQL migrations; each tenant schema records its own version,
// serialized per tenant by a lock keyed by that tenant), MigrateWith (the
// tenant lifecycle's: creates a schema only when its caller allows it,
// under that lock, records the tenant that owns it, and never migrates a
// schema of another owner) and Drop. Every schema name is validated with
// tenantctx.ValidateSchema and quoted with pgx.Identifier before use.
//
// Access: NewPool configures a pool whose connections have an empty
// search_path and whose AfterRelease proves a connection clean or destroys
// it. InTenant is the one way to run tenant queries: it takes the tenant from
// ctx, opens a transaction and pins search_path to the tenant's schema with
// set_config(..., true), the same as SET LOCAL (sent with BEGIN in one round
// trip), so the pin ends with the transaction, also behind PgBouncer in
// transaction pooling mode. The pin takes the schema only when it exists
// and records no owner or the tenant in ctx (MigrateWith records it); a
// schema of another tenant with the same name (a deleted tenant's slug
// given to a new one), or none at all (one created after the pin could be
// that new tenant's), leaves search_path empty, and the unit finds no table.
//
// Cost, measured on 2 cores against a local PostgreSQL 15
// (BenchmarkInTenantSelect1, BenchmarkMigrate*): InTenant around SELECT 1
// takes about 150-175 µs on a one-connection pool (190-210 µs while BEGIN
// and the pin were separate round trips); verifying every release with
// a separate query took 590 µs there (the next acquire waits for it), and a
// pool with no check at all 120 µs. InTenant therefore folds the
// verification into its COMMIT round trip (see ConfigurePool). The pin's
// owner check cost InTenant about 120 µs more (306 against 188 µs serial,
// the same run, 2026-12-03) while its pin and check were simple-protocol
// queries, planned on every unit; since 2026-12-04 they are batches whose
// statements pgx prepares once per connection, as InTenantBatch's are
// (PostgreSQL's CPU per InTenant SELECT 1 in the load command's middleware
// scenario: 145-210 µs, 390-488 before; InTenantBatch's 90-142 µs). Migrating a
// fresh schema costs about 5.6 ms (8 at a time), a no-op re-run about
// 55 µs per schema: 1,000 tenants in about 6 s and 0.06 s.
//
// Behind PgBouncer in transaction pooling mode: set
// default_query_exec_mode=exec in DATABASE_URL, and either let PgBouncer
// pass search_path through (track_extra_parameters, 1.20+) or, with older
// versions, add search_path to ignore_startup_parameters and give the
// database an empty default search_path (ALTER DATABASE ... SET
// search_path to the empty string; see docs/operations.md, "PgBouncer").
// NewPool's connections fail loudly at connect if the empty search_path does
// not arrive.
package schema
