package backend

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// grantProbeSchema is the schema checkGrants creates, and rolls back, to
// see what DATABASE_URL's role may do with a tenant schema
// MIGRATIONS_DATABASE_URL's role creates.
const grantProbeSchema = "tenantworker_grant_check"

// checkGrants checks, when MIGRATIONS_DATABASE_URL's role (owner's) is not
// DATABASE_URL's (app's), that the latter may use what the former creates,
// as README's "The database role" says to grant: USAGE on the catalog's
// schema and SELECT, INSERT, UPDATE, DELETE on its tables, and the same on
// a tenant schema the owner creates now (its default privileges, seen on
// a schema and table made in a transaction that is rolled back). Without
// them the first provisioning failed with "permission denied for schema
// tenancy", or every task of a tenant with "permission denied for schema
// tenant_...". The error names both roles, what is missing and the
// statements that grant it. An owner that may not create schemas now is
// not probed for its defaults (enqueue db list says it is unusable).
func checkGrants(ctx context.Context, app, owner *pgxpool.Pool) error {
	var appRole, ownerRole string
	if err := app.QueryRow(ctx, "SELECT current_user").Scan(&appRole); err != nil {
		return fmt.Errorf("check grants: DATABASE_URL's role: %w", err)
	}
	var mayCreate bool
	if err := owner.QueryRow(ctx, "SELECT current_user, pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE')").Scan(&ownerRole, &mayCreate); err != nil {
		return fmt.Errorf("check grants: MIGRATIONS_DATABASE_URL's role: %w", err)
	}
	if appRole == ownerRole {
		return nil
	}
	var missing []string
	var usage bool
	var tables []string
	if err := app.QueryRow(ctx, `SELECT pg_catalog.has_schema_privilege('tenancy', 'USAGE'),
		ARRAY(SELECT c.relname::text FROM pg_catalog.pg_class c
			WHERE c.relnamespace = 'tenancy'::regnamespace AND c.relkind IN ('r', 'p') AND NOT (
				pg_catalog.has_table_privilege(c.oid, 'SELECT') AND pg_catalog.has_table_privilege(c.oid, 'INSERT') AND
				pg_catalog.has_table_privilege(c.oid, 'UPDATE') AND pg_catalog.has_table_privilege(c.oid, 'DELETE'))
			ORDER BY 1)`).Scan(&usage, &tables); err != nil {
		return fmt.Errorf("check grants: catalog: %w", err)
	}
	if !usage {
		missing = append(missing, "USAGE ON SCHEMA tenancy")
	} else if len(tables) > 0 {
		missing = append(missing, "SELECT, INSERT, UPDATE, DELETE ON TABLE tenancy."+strings.Join(tables, ", tenancy."))
	}
	if mayCreate {
		defaults, err := probeDefaults(ctx, owner, appRole)
		if err != nil {
			return err
		}
		missing = append(missing, defaults...)
	}
	if len(missing) == 0 {
		return nil
	}
	a, o := pgx.Identifier{appRole}.Sanitize(), pgx.Identifier{ownerRole}.Sanitize()
	return fmt.Errorf("DATABASE_URL's role %s may not use what MIGRATIONS_DATABASE_URL's role %s creates: it lacks %s; as %s, run: "+
		"GRANT USAGE ON SCHEMA tenancy TO %s; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA tenancy TO %s; "+
		"ALTER DEFAULT PRIVILEGES GRANT USAGE ON SCHEMAS TO %s; ALTER DEFAULT PRIVILEGES GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %s; "+
		"ALTER DEFAULT PRIVILEGES GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO %s (README, \"The database role\"; tenant schemas made before need the same GRANTs)",
		appRole, ownerRole, strings.Join(missing, "; "), o, a, a, a, a, a)
}

// probeDefaults returns what appRole would lack on a tenant schema and its
// tables created by owner's role now: a schema and a table made in a
// transaction that is rolled back.
func probeDefaults(ctx context.Context, owner *pgxpool.Pool, appRole string) ([]string, error) {
	tx, err := owner.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("check grants: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	probe := pgx.Identifier{grantProbeSchema}.Sanitize()
	if _, err := tx.Exec(ctx, "CREATE SCHEMA "+probe+"; CREATE TABLE "+probe+".t (id int)"); err != nil {
		return nil, fmt.Errorf("check grants: probe schema: %w", err)
	}
	var usage, table bool
	if err := tx.QueryRow(ctx, `SELECT pg_catalog.has_schema_privilege($1, $2, 'USAGE'),
		pg_catalog.has_table_privilege($1, $3, 'SELECT') AND pg_catalog.has_table_privilege($1, $3, 'INSERT') AND
		pg_catalog.has_table_privilege($1, $3, 'UPDATE') AND pg_catalog.has_table_privilege($1, $3, 'DELETE')`,
		appRole, grantProbeSchema, probe+".t").Scan(&usage, &table); err != nil {
		return nil, fmt.Errorf("check grants: probe schema: %w", err)
	}
	var missing []string
	if !usage {
		missing = append(missing, "USAGE ON SCHEMAS (default privileges)")
	}
	if !table {
		missing = append(missing, "SELECT, INSERT, UPDATE, DELETE ON TABLES (default privileges)")
	}
	return missing, nil
}
