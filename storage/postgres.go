package storage

import (
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the Catalog kept in the PostgreSQL schema `tenancy`, the
// source of truth for tenants, API keys and the audit log. Every statement
// names its tables schema-qualified, so it works on a pool whose
// search_path is empty. It is safe for concurrent use.
type Postgres struct {
	pool    *pgxpool.Pool
	queries atomic.Int64
}

// Postgres implements Catalog.
var _ Catalog = (*Postgres)(nil)

// NewPostgres returns the catalog on pool. It sends no query: the `tenancy`
// schema must be up to date, which MigrateCatalog, called once at start,
// makes it.
func NewPostgres(pool *pgxpool.Pool) *Postgres {
	if pool == nil {
		panic("storage: NewPostgres with a nil pool")
	}
	return &Postgres{pool: pool}
}

// Queries returns how many look-ups (TenantByID, TenantBySlug and
// TenantForAPIKey) were sent to PostgreSQL since NewPostgres. Look-ups
// rejected before any SQL (a malformed id, slug or key) are not counted.
// Tests of caching layers use it to count what reaches the database.
func (p *Postgres) Queries() int64 { return p.queries.Load() }
