package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/tenantctx"
)

// SetQueuePaused records or clears an operator's pause of the tenant's
// queues (tenancy.queue_pauses), under the tenant's lock as
// SyncQueuePaused.
func (p *Postgres) SetQueuePaused(ctx context.Context, id string, paused bool) error {
	if err := tenantctx.ValidateID(id); err != nil {
		return fmt.Errorf("set queue paused: %w: %w", ErrNotFound, err)
	}
	op := "record"
	if !paused {
		op = "clear"
	}
	_, err := p.writeQueuePause(ctx, id, func(context.Context) (bool, error) { return paused, nil })
	if !paused && errors.Is(err, ErrNotFound) {
		return nil // no tenant, no record
	}
	if err != nil {
		return fmt.Errorf("%s queue pause of tenant %s: %w", op, id, err)
	}
	return nil
}

// SyncQueuePaused records or clears an operator's pause of the tenant's
// queues as read says, read while the tenant's row is locked (see
// writeQueuePause).
func (p *Postgres) SyncQueuePaused(ctx context.Context, id string, read func(context.Context) (bool, error)) (bool, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return false, fmt.Errorf("sync queue pause: %w: %w", ErrNotFound, err)
	}
	paused, err := p.writeQueuePause(ctx, id, read)
	if err != nil {
		return false, fmt.Errorf("sync queue pause of tenant %s: %w", id, err)
	}
	return paused, nil
}

// writeQueuePause writes the tenant's pause record as read says, in one
// transaction that first locks the tenant's row FOR NO KEY UPDATE and
// calls read while holding it. That lock conflicts with itself, so the
// writes of one tenant's record (every one takes it) are saved in the
// order they read, and with DeleteTenant's FOR UPDATE, so a deletion
// waits for the write or the write finds no tenant (ErrNotFound, read not
// called). It leaves alone the FOR KEY SHARE of the foreign keys of
// other writes that name the tenant (audit entries, keys); key issuance
// and a schema's creation (FOR SHARE) wait for read, one Redis read. The
// transaction runs at read committed whatever the catalog database's
// default_transaction_isolation: at repeatable read or serializable the
// write read the snapshot taken by the row's lock, before it waited for
// another write, so a clear deleted nothing of the record that write
// committed (the tenant stayed recorded paused) and a record was refused
// (SQLSTATE 40001).
func (p *Postgres) writeQueuePause(ctx context.Context, id string, read func(context.Context) (bool, error)) (bool, error) {
	var paused bool
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM tenancy.tenants WHERE id = $1 FOR NO KEY UPDATE`, id).Scan(&one)
		if err != nil {
			return translatePgError(err)
		}
		if paused, err = read(ctx); err != nil {
			return fmt.Errorf("read the pause: %w", err)
		}
		if paused {
			_, err = tx.Exec(ctx,
				`INSERT INTO tenancy.queue_pauses (tenant_id) VALUES ($1) ON CONFLICT (tenant_id) DO NOTHING`, id)
		} else {
			_, err = tx.Exec(ctx, `DELETE FROM tenancy.queue_pauses WHERE tenant_id = $1`, id)
		}
		return translatePgError(err)
	})
	if err != nil {
		return false, err
	}
	return paused, nil
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
