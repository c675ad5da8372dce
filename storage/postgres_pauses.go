package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/invoicing/tenantworker/tenantctx"
)

// SetQueuePaused records or clears an operator's pause of the tenant's
// queues (tenancy.queue_pauses).
func (p *Postgres) SetQueuePaused(ctx context.Context, id string, paused bool) error {
	if err := tenantctx.ValidateID(id); err != nil {
		return fmt.Errorf("set queue paused: %w: %w", ErrNotFound, err)
	}
	if !paused {
		if _, err := p.pool.Exec(ctx, `DELETE FROM tenancy.queue_pauses WHERE tenant_id = $1`, id); err != nil {
			return fmt.Errorf("clear queue pause of tenant %s: %w", id, err)
		}
		return nil
	}
	_, err := p.pool.Exec(ctx,
		`INSERT INTO tenancy.queue_pauses (tenant_id) VALUES ($1) ON CONFLICT (tenant_id) DO NOTHING`, id)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23503" { // no such tenant
		return fmt.Errorf("record queue pause of tenant %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("record queue pause of tenant %s: %w", id, err)
	}
	return nil
}

// PausedTenants returns the tenants whose queues are paused, in id order.
func (p *Postgres) PausedTenants(ctx context.Context) ([]string, error) {
	rows, err := p.pool.Query(ctx, `SELECT tenant_id FROM tenancy.queue_pauses ORDER BY tenant_id`)
	if err != nil {
		return nil, fmt.Errorf("paused tenants: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("paused tenants: %w", err)
	}
	return ids, nil
}
