package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/tenantctx"
)

// tenantColumns are the columns scanned by scanTenant, in its order, for a
// query on tenancy.tenants without an alias (SELECT, or RETURNING): the
// last is the generation of the tenant's database's registration (0 when
// this statement's snapshot does not see it yet, a registration committed
// while the statement ran).
const tenantColumns = `id, slug, name, status, schema_name, plan, weight, max_running, max_waiting, database, time_zone, created_at, updated_at,
	COALESCE((SELECT d.generation FROM tenancy.databases AS d WHERE d.name = tenants.database), 0)`

// touchUpdated is the SET clause every change of a tenant's row moves its
// updated_at forward with: now(), the transaction's start, unless the row
// already holds that or later (a change that started later and took the
// row first): then a microsecond past it. So updated_at orders the row's
// versions, as fair.PolicyVersion relies on.
const touchUpdated = `updated_at = GREATEST(now(), updated_at + interval '1 microsecond')`

// scanTenant reads one row of tenantColumns.
func scanTenant(row pgx.Row) (tenantctx.Tenant, error) {
	var t tenantctx.Tenant
	var status string
	if err := row.Scan(&t.ID, &t.Slug, &t.Name, &status, &t.Schema, &t.Plan,
		&t.Limits.Weight, &t.Limits.MaxRunning, &t.Limits.MaxWaiting, &t.Database, &t.TimeZone, &t.CreatedAt, &t.UpdatedAt, &t.DatabaseGeneration); err != nil {
		return tenantctx.Tenant{}, err
	}
	t.Status = tenantctx.Status(status)
	return t, nil
}

// TenantByID returns the tenant with the given id. A malformed id is
// ErrNotFound without a query.
func (p *Postgres) TenantByID(ctx context.Context, id string) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("get tenant: %w: %w", ErrNotFound, err)
	}
	p.queries.Add(1)
	return TenantByIDIn(ctx, p.pool, id)
}

// RowQuerier runs a query that returns at most one row: a pool, a
// connection or a transaction (pgx.Tx).
type RowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// TenantByIDIn returns the tenant with the given id as the catalog on q's
// database has it, read through q: a transaction on the catalog's
// database (a tenant unit of work on "main") reads it without taking
// another connection. A malformed id is ErrNotFound without a query.
func TenantByIDIn(ctx context.Context, q RowQuerier, id string) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("get tenant: %w: %w", ErrNotFound, err)
	}
	t, err := scanTenant(q.QueryRow(ctx,
		`SELECT `+tenantColumns+` FROM tenancy.tenants WHERE id = $1`, id))
	if err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("get tenant %s: %w", id, translatePgError(err))
	}
	return t, nil
}

// TenantBySlug returns the tenant with the given slug. A malformed slug is
// ErrNotFound without a query.
func (p *Postgres) TenantBySlug(ctx context.Context, slug string) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateSlug(slug); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("get tenant by slug: %w: %w", ErrNotFound, err)
	}
	p.queries.Add(1)
	t, err := scanTenant(p.pool.QueryRow(ctx,
		`SELECT `+tenantColumns+` FROM tenancy.tenants WHERE slug = $1`, slug))
	if err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("get tenant by slug %s: %w", slug, translatePgError(err))
	}
	return t, nil
}

// ListTenants returns one page of tenants in id order, after opts.After.
func (p *Postgres) ListTenants(ctx context.Context, opts ListOptions) ([]tenantctx.Tenant, error) {
	var (
		rows pgx.Rows
		err  error
	)
	switch {
	case opts.Status == "":
		rows, err = p.pool.Query(ctx,
			`SELECT `+tenantColumns+` FROM tenancy.tenants
			 WHERE id > $1 ORDER BY id LIMIT $2`,
			opts.After, opts.PageLimit())
	case opts.Status.Valid():
		rows, err = p.pool.Query(ctx,
			`SELECT `+tenantColumns+` FROM tenancy.tenants
			 WHERE status = $1 AND id > $2 ORDER BY id LIMIT $3`,
			string(opts.Status), opts.After, opts.PageLimit())
	default:
		return nil, fmt.Errorf("list tenants: %w: %.40q", tenantctx.ErrInvalidStatus, opts.Status)
	}
	if err != nil {
		return nil, fmt.Errorf("list tenants after %.64q: %w", opts.After, err)
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenantctx.Tenant, error) { return scanTenant(r) })
	if err != nil {
		return nil, fmt.Errorf("list tenants after %.64q: %w", opts.After, err)
	}
	return ts, nil
}

// CreateTenant validates and inserts t, returning it with the catalog's
// timestamps; ErrConflict names the taken constraint (id, slug or schema;
// tenant_ids_pkey for an id used before).
func (p *Postgres) CreateTenant(ctx context.Context, t tenantctx.Tenant) (tenantctx.Tenant, error) {
	if err := t.Validate(); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("create tenant: %w", err)
	}
	created, err := scanTenant(p.pool.QueryRow(ctx, createTenantSQL, createTenantArgs(t)...))
	if err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("create tenant %s (slug %s): %w", t.ID, t.Slug, translatePgError(err))
	}
	return created, nil
}

// createTenantArgs are createTenantSQL's arguments for t.
func createTenantArgs(t tenantctx.Tenant) []any {
	return []any{t.ID, t.Slug, t.Name, string(t.Status), t.Schema, t.Plan,
		t.Limits.Weight, t.Limits.MaxRunning, t.Limits.MaxWaiting, t.DatabaseName(), t.TimeZoneName()}
}

// createTenantSQL is CreateTenant's statement: it claims the id in
// tenancy.tenant_ids and inserts the row, in one statement. The claim's
// primary key makes it take turns with WithdrawTenant: a withdrawal waits
// for a creation not yet committed, and a creation that comes after a
// withdrawal fails on the id (a unique violation, ErrConflict).
const createTenantSQL = `
WITH claim AS (
	INSERT INTO tenancy.tenant_ids (id) VALUES ($1)
	RETURNING id)
INSERT INTO tenancy.tenants (id, slug, name, status, schema_name, plan, weight, max_running, max_waiting, database, time_zone)
VALUES ((SELECT id FROM claim), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
RETURNING ` + tenantColumns

// WithdrawTenant makes sure tenant id does not exist and never will, also
// when a CreateTenant of it reached PostgreSQL but its answer did not
// reach the caller (the connection lost, or the caller's deadline passed
// while it ran): PostgreSQL may still commit such an INSERT after a plain
// DeleteTenant found nothing to delete, and the tenant would then hold its
// slug for good. In one transaction it claims the id, withdrawn
// (tenancy.tenant_ids): that waits for a creation of the id still running,
// and makes one that comes later fail on the id. Then it deletes the row
// as DeleteTenant does, if there is one. ErrNotFound when there was none:
// the id is withdrawn all the same. The transaction runs at read
// committed whatever the catalog database's default_transaction_isolation:
// at repeatable read or serializable the claim, having waited for a
// creation that then committed, was refused (SQLSTATE 40001: the id's row
// is newer than the snapshot), and the tenant stayed.
func (p *Postgres) WithdrawTenant(ctx context.Context, id string) error {
	if err := tenantctx.ValidateID(id); err != nil {
		return fmt.Errorf("withdraw tenant: %w: %w", ErrNotFound, err)
	}
	var found bool
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx,
			`INSERT INTO tenancy.tenant_ids AS c (id, withdrawn_at) VALUES ($1, now())
			 ON CONFLICT (id) DO UPDATE SET withdrawn_at = COALESCE(c.withdrawn_at, now())`, id); err != nil {
			return fmt.Errorf("claim id: %w", err)
		}
		err := deleteTenantRow(ctx, tx, id)
		if errors.Is(err, ErrNotFound) {
			return nil // commit the claim: no creation of id can follow
		}
		found = err == nil
		return err
	})
	if err != nil {
		return fmt.Errorf("withdraw tenant %s: %w", id, err)
	}
	if !found {
		return fmt.Errorf("withdraw tenant %s: %w", id, ErrNotFound)
	}
	return nil
}

// SetStatus moves the tenant to status inside a transaction that locks its
// row, so concurrent changes are checked against the lifecycle one by one.
func (p *Postgres) SetStatus(ctx context.Context, id string, status tenantctx.Status) (tenantctx.Tenant, error) {
	return p.setStatus(ctx, id, "", status)
}

// SetStatusFrom moves the tenant to status only while its status is from;
// otherwise it returns the tenant as it is and an error wrapping
// ErrStatusChanged. The row is locked while it decides.
func (p *Postgres) SetStatusFrom(ctx context.Context, id string, from, status tenantctx.Status) (tenantctx.Tenant, error) {
	if !from.Valid() {
		return tenantctx.Tenant{}, fmt.Errorf("set status of tenant %s: %w: %w: from %.40q",
			id, ErrInvalidTransition, tenantctx.ErrInvalidStatus, from)
	}
	return p.setStatus(ctx, id, from, status)
}

// setStatus is SetStatus, and SetStatusFrom when from is set. Its
// transaction runs at read committed whatever the catalog database's
// default_transaction_isolation: at repeatable read or serializable a
// change that waited for another write of the tenant's row (a change of
// plan) was refused with SQLSTATE 40001 once that write committed.
func (p *Postgres) setStatus(ctx context.Context, id string, from, status tenantctx.Status) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set status of tenant: %w: %w", ErrNotFound, err)
	}
	if !status.Valid() {
		return tenantctx.Tenant{}, fmt.Errorf("set status of tenant %s: %w: %w: %.40q",
			id, ErrInvalidTransition, tenantctx.ErrInvalidStatus, status)
	}
	var updated tenantctx.Tenant
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		current, err := scanTenant(tx.QueryRow(ctx,
			`SELECT `+tenantColumns+` FROM tenancy.tenants WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return translatePgError(err)
		}
		if from != "" && current.Status != from {
			updated = current
			return fmt.Errorf("%w: it is %s, not %s", ErrStatusChanged, current.Status, from)
		}
		if !current.Status.CanTransition(status) {
			return fmt.Errorf("%w from %s to %s", ErrInvalidTransition, current.Status, status)
		}
		updated, err = scanTenant(tx.QueryRow(ctx,
			`UPDATE tenancy.tenants SET status = $2, `+touchUpdated+`
			 WHERE id = $1 RETURNING `+tenantColumns,
			id, string(status)))
		return translatePgError(err)
	})
	if err != nil {
		return updated, fmt.Errorf("set status of tenant %s to %s: %w", id, status, err)
	}
	return updated, nil
}

// SetLimits replaces the tenant's plan and limits (an empty plan keeps
// the current one); ErrTenantDeleting, changing nothing, when the tenant
// is being deleted. The update's condition is checked on the row as it is
// once a status change in progress committed, so a change of limits and a
// deletion request take turns: the update runs at read committed whatever
// the catalog database's default_transaction_isolation (as setStatus).
func (p *Postgres) SetLimits(ctx context.Context, id, plan string, l tenantctx.Limits) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set limits of tenant: %w: %w", ErrNotFound, err)
	}
	if err := l.Validate(); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set limits of tenant %s: %w", id, err)
	}
	var t tenantctx.Tenant
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) (err error) {
		t, err = scanTenant(tx.QueryRow(ctx,
			`UPDATE tenancy.tenants
			    SET plan = COALESCE(NULLIF($2, ''), plan), weight = $3, max_running = $4, max_waiting = $5, `+touchUpdated+`
			  WHERE id = $1 AND status <> $6 RETURNING `+tenantColumns,
			id, plan, l.Weight, l.MaxRunning, l.MaxWaiting, string(tenantctx.StatusDeleting)))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		// No such tenant, or one being deleted.
		if cur, lerr := p.TenantByID(ctx, id); lerr == nil && cur.Status == tenantctx.StatusDeleting {
			return cur, fmt.Errorf("set limits of tenant %s: %w", id, ErrTenantDeleting)
		}
	}
	if err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set limits of tenant %s: %w", id, translatePgError(err))
	}
	return t, nil
}

// SetTimeZone replaces the tenant's time zone (an IANA name,
// tenantctx.ValidateTimeZone); ErrTenantDeleting, changing nothing, when
// the tenant is being deleted, as SetLimits, and at read committed as it.
func (p *Postgres) SetTimeZone(ctx context.Context, id, zone string) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set time zone of tenant: %w: %w", ErrNotFound, err)
	}
	if err := tenantctx.ValidateTimeZone(zone); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set time zone of tenant %s: %w", id, err)
	}
	var t tenantctx.Tenant
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) (err error) {
		t, err = scanTenant(tx.QueryRow(ctx,
			`UPDATE tenancy.tenants SET time_zone = $2, `+touchUpdated+`
			  WHERE id = $1 AND status <> $3 RETURNING `+tenantColumns,
			id, zone, string(tenantctx.StatusDeleting)))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		// No such tenant, or one being deleted.
		if cur, lerr := p.TenantByID(ctx, id); lerr == nil && cur.Status == tenantctx.StatusDeleting {
			return cur, fmt.Errorf("set time zone of tenant %s: %w", id, ErrTenantDeleting)
		}
	}
	if err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set time zone of tenant %s: %w", id, translatePgError(err))
	}
	return t, nil
}

// DeleteTenant removes the tenant's catalog row and, by the foreign key's
// cascade, its API keys (the audit log is kept); ErrNotFound for an
// unknown id.
//
// In one transaction, one statement after the other: the tenant's row is
// locked (FOR UPDATE), which waits for an IssueAPIKey in progress (it holds
// the row share-locked until its key commits) and makes any later one wait
// and then find no tenant; then every key of the tenant, the one just
// issued included, is locked in id order (a statement of its own, so that
// it sees the keys committed while the first waited), as RecordAPIKeyUse
// and RevokeAPIKeys lock them; then the row is deleted, and the cascade
// deletes only keys already locked. Without the ordered lock the cascade
// locked the keys in the order of its plan and deadlocked (40P01) with a
// flush of overlapping keys; without the row locked first, a key issued
// while the keys were being locked escaped them and the cascade deadlocked
// on it. The transaction runs at read committed whatever the catalog
// database's default_transaction_isolation: at repeatable read or
// serializable the lock of the keys read the snapshot the row's lock took
// before its wait, which has no key issued meanwhile, and the cascade,
// meeting that key, was refused (SQLSTATE 40001).
func (p *Postgres) DeleteTenant(ctx context.Context, id string) error {
	if err := tenantctx.ValidateID(id); err != nil {
		return fmt.Errorf("delete tenant: %w: %w", ErrNotFound, err)
	}
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error { return deleteTenantRow(ctx, tx, id) })
	if err != nil {
		return fmt.Errorf("delete tenant %s: %w", id, err)
	}
	return nil
}

// deleteTenantRow is the body of DeleteTenant's transaction (see there for
// the order of its locks); ErrNotFound when there is no such row.
func deleteTenantRow(ctx context.Context, tx pgx.Tx, id string) error {
	var one int
	if err := tx.QueryRow(ctx, `SELECT 1 FROM tenancy.tenants WHERE id = $1 FOR UPDATE`, id).Scan(&one); err != nil {
		return translatePgError(err)
	}
	if _, err := tx.Exec(ctx, `SELECT k.id FROM tenancy.api_keys AS k WHERE k.tenant_id = $1 ORDER BY k.id FOR UPDATE OF k`, id); err != nil {
		return fmt.Errorf("lock api keys: %w", err)
	}
	tag, err := tx.Exec(ctx, `DELETE FROM tenancy.tenants WHERE id = $1`, id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}
