package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/invoicing/tenantworker/tenantctx"
)

// AddDatabase registers a tenant database.
func (p *Postgres) AddDatabase(ctx context.Context, name, url string) (Database, error) {
	if err := tenantctx.ValidateDatabaseName(name); err != nil {
		return Database{}, fmt.Errorf("add database: %w", err)
	}
	d := Database{Name: name, URL: url}
	err := p.pool.QueryRow(ctx,
		`INSERT INTO tenancy.databases (name, url) VALUES ($1, $2) RETURNING created_at, generation`,
		name, url).Scan(&d.CreatedAt, &d.Generation)
	if err != nil {
		return Database{}, fmt.Errorf("add database %s: %w", name, translatePgError(err))
	}
	return d, nil
}

// RemoveDatabase unregisters a database that holds no tenant. The
// tenants' foreign key to tenancy.databases refuses the delete when a
// tenant is placed there, also one a concurrent provisioning or move is
// placing there.
func (p *Postgres) RemoveDatabase(ctx context.Context, name string) error {
	if err := tenantctx.ValidateDatabaseName(name); err != nil {
		return fmt.Errorf("remove database: %w: %w", ErrNotFound, err)
	}
	if name == tenantctx.DefaultDatabase {
		return fmt.Errorf("remove database %s: %w: it is the catalog's own database", name, ErrInUse)
	}
	var tenants int64
	err := p.pool.QueryRow(ctx, `
		WITH removed AS (
			DELETE FROM tenancy.databases d WHERE d.name = $1
			   AND NOT EXISTS (SELECT 1 FROM tenancy.tenants t WHERE t.database = d.name)
			RETURNING d.name)
		-- -1: removed; otherwise the tenants placed there (none: it was not
		-- registered).
		SELECT CASE WHEN EXISTS (SELECT 1 FROM removed) THEN -1
		            ELSE (SELECT count(*) FROM tenancy.tenants WHERE database = $1) END`, name).Scan(&tenants)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "23503": // a tenant was placed there meanwhile
		return fmt.Errorf("remove database %s: %w: a tenant was placed there meanwhile", name, ErrInUse)
	case err != nil:
		return fmt.Errorf("remove database %s: %w", name, err)
	case tenants > 0:
		return fmt.Errorf("remove database %s: %w: %d tenants are placed there (move them first)", name, ErrInUse, tenants)
	case tenants == 0:
		return fmt.Errorf("remove database %s: %w", name, ErrNotFound)
	}
	return nil
}

// Databases lists the registered databases with their tenant counts.
func (p *Postgres) Databases(ctx context.Context) ([]Database, error) {
	rows, err := p.pool.Query(ctx,
		`SELECT d.name, d.url, d.created_at, d.generation, count(t.id)
		   FROM tenancy.databases d LEFT JOIN tenancy.tenants t ON t.database = d.name
		  GROUP BY d.name ORDER BY d.name`)
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Database, error) {
		var d Database
		var n int64
		err := r.Scan(&d.Name, &d.URL, &d.CreatedAt, &d.Generation, &n)
		d.Tenants = int(n)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	return ds, nil
}

// SetPlacement records the tenant's database, if it is on from (and, when
// generation is not 0, to's registration is that one).
func (p *Postgres) SetPlacement(ctx context.Context, id, from, to string, generation int64) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set placement of tenant: %w: %w", ErrNotFound, err)
	}
	if err := tenantctx.ValidateDatabaseName(to); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set placement of tenant %s: %w: %w", id, ErrNotFound, err)
	}
	// Only a tenant that runs (active or suspended) and is still where the
	// caller found it moves: one being deleted meanwhile keeps its
	// placement, so its destroy erases where its schema is, and a second
	// move started from the same placement loses to the first. With a
	// generation, only onto that registration of to: see setPlacementSQL.
	// At read committed whatever the catalog database's default isolation:
	// at repeatable read or serializable a switch that waited for another
	// write of the tenant's row was refused (40001) once that committed.
	var t tenantctx.Tenant
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) (err error) {
		t, err = scanTenant(tx.QueryRow(ctx, setPlacementSQL, id, to, from, generation))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		var status, database string
		switch serr := p.pool.QueryRow(ctx, `SELECT status, database FROM tenancy.tenants WHERE id = $1`, id).Scan(&status, &database); {
		case serr == nil && database != from:
			return tenantctx.Tenant{}, fmt.Errorf("set placement of tenant %s: on %.70s, not %.70s: %w", id, database, from, ErrPlacementChanged)
		case serr == nil && status != string(tenantctx.StatusActive) && status != string(tenantctx.StatusSuspended):
			return tenantctx.Tenant{}, fmt.Errorf("set placement of tenant %s (%.40s): %w", id, status, ErrInvalidTransition)
		case serr == nil && generation != 0:
			return tenantctx.Tenant{}, p.registrationChanged(ctx, id, to, generation)
		case serr == nil:
			return tenantctx.Tenant{}, fmt.Errorf("set placement of tenant %s (%.40s): %w", id, status, ErrInvalidTransition)
		case !errors.Is(serr, pgx.ErrNoRows):
			return tenantctx.Tenant{}, fmt.Errorf("set placement of tenant %s to %s: %w", id, to, translatePgError(serr))
		}
	}
	if err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set placement of tenant %s to %s: %w", id, to, translatePgError(err))
	}
	return t, nil
}

// setPlacementSQL is SetPlacement's statement: $1 tenant id, $2 to, $3
// from, $4 to's registration (0: any). The registration is compared on its
// row locked FOR KEY SHARE (target): a registration removed after the
// statement's snapshot is not locked (the row is skipped) and the
// comparison fails, and the one locked stays until the switch commits (a
// removal waits, then finds the tenant placed there), so the tenant's
// foreign key binds it to the registration compared, never to one added
// again under the name while the statement ran.
const setPlacementSQL = `
WITH target AS MATERIALIZED (
	SELECT d.generation
	  FROM tenancy.databases AS d
	 WHERE d.name = $2
	   FOR KEY SHARE OF d)
UPDATE tenancy.tenants SET database = $2, ` + touchUpdated + `
 WHERE id = $1 AND database = $3 AND status IN ('active', 'suspended')
   AND ($4::bigint = 0 OR (SELECT generation FROM target) = $4::bigint)
RETURNING ` + tenantColumns

// registrationChanged is SetPlacement's error for a tenant that did not
// move because to is no longer registration generation.
func (p *Postgres) registrationChanged(ctx context.Context, id, to string, generation int64) error {
	var now int64
	switch err := p.pool.QueryRow(ctx, `SELECT generation FROM tenancy.databases WHERE name = $1`, to).Scan(&now); {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("set placement of tenant %s: database %s (registration %d) is no longer registered: %w",
			id, to, generation, ErrRegistrationChanged)
	case err != nil:
		return fmt.Errorf("set placement of tenant %s: database %s: %w", id, to, err)
	}
	return fmt.Errorf("set placement of tenant %s: database %s is registration %d, not %d (removed and registered again): %w",
		id, to, now, generation, ErrRegistrationChanged)
}
