package storage

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the Catalog kept in the PostgreSQL schema `tenancy`, the
// source of truth for tenants, API keys and the audit log. Every statement
// names its tables schema-qualified, so it works on a pool whose
// search_path is empty. It is safe for concurrent use.
type Postgres struct {
	pool    *pgxpool.Pool
	log     *slog.Logger
	queries atomic.Int64
}

// Postgres implements Catalog.
var _ Catalog = (*Postgres)(nil)

// PostgresOption configures NewPostgres.
type PostgresOption func(*Postgres)

// WithLogger makes NewPostgres log the catalog migrations it applies. The
// default discards them.
func WithLogger(log *slog.Logger) PostgresOption {
	return func(p *Postgres) {
		if log != nil {
			p.log = log
		}
	}
}

// NewPostgres returns the catalog on pool after bringing the `tenancy`
// schema up to date: pending embedded migrations are applied, each in its
// own transaction under a transaction-scoped advisory lock, so processes
// starting together apply each migration exactly once. Applied versions are
// recorded in tenancy.schema_migrations.
func NewPostgres(ctx context.Context, pool *pgxpool.Pool, opts ...PostgresOption) (*Postgres, error) {
	if pool == nil {
		return nil, fmt.Errorf("new postgres catalog: nil pool")
	}
	p := &Postgres{pool: pool, log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(p)
	}
	if err := p.migrate(ctx); err != nil {
		return nil, fmt.Errorf("new postgres catalog: %w", err)
	}
	return p, nil
}

// Queries returns how many look-ups (Tenant, TenantBySlug and
// TenantForAPIKey) were sent to PostgreSQL since NewPostgres. Look-ups
// rejected before any SQL (a malformed id, slug or key) are not counted.
// Tests of caching layers use it to count what reaches the database.
func (p *Postgres) Queries() int64 { return p.queries.Load() }
