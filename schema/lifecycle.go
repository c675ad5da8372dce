package schema

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/invoicing/tenantworker/tenantctx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// lockNamespace is the first key of every tenant lock
// (pg_advisory_xact_lock(int, int)); the second is hashtext(schema). It
// spells "tent" in ASCII, keeping tenant locks apart from other advisory
// locks of the database. Two schemas whose names hash alike merely
// serialize with each other.
const lockNamespace int32 = 0x74656e74

// lockSQL takes the tenant's transaction-scoped lock: released by COMMIT or
// ROLLBACK, so it is safe behind PgBouncer in transaction pooling mode.
const lockSQL = "SELECT pg_catalog.pg_advisory_xact_lock($1::int4, pg_catalog.hashtext($2))"

// lockWaitSQL sets, until the end of the transaction, no lock_timeout and
// statement_timeout to $1 milliseconds (the time left before the caller's
// deadline, timeoutMillis(deadlineTimeout(ctx)); 0 for none), overriding
// the database's or role's: it goes before the wait for a tenant's lock,
// whose holder (a migration step, a move's copy, a drop) commonly holds it
// longer than an operator's guard of a second, which would fail the waiter
// with 55P03 or 57014 rather than let it wait its turn.
const lockWaitSQL = "SELECT pg_catalog.set_config('lock_timeout', '0', true), pg_catalog.set_config('statement_timeout', $1, true)"

// waitForLocks runs lockWaitSQL in tx with the time left before ctx's
// deadline.
func waitForLocks(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, lockWaitSQL, strconv.FormatInt(timeoutMillis(deadlineTimeout(ctx)), 10)); err != nil {
		return fmt.Errorf("set lock_timeout and statement_timeout: %w", err)
	}
	return nil
}

// quoteSchema validates a schema name and returns it quoted for SQL.
func quoteSchema(schemaName string) (string, error) {
	if err := tenantctx.ValidateSchema(schemaName); err != nil {
		return "", err
	}
	return pgx.Identifier{schemaName}.Sanitize(), nil
}

// lockExistence takes the schema's existence lock exclusively inside tx
// (see existenceLockKey): it waits for every unit pinned to the schema by
// name. Taken before the tenant lock, as the units take it.
func lockExistence(ctx context.Context, tx pgx.Tx, schemaName string) error {
	if _, err := tx.Exec(ctx, lockSQL, existenceLockNamespace, schemaName); err != nil {
		return fmt.Errorf("lock schema %s: %w", schemaName, err)
	}
	return nil
}

// lockTenant takes the per-tenant lock inside tx.
func lockTenant(ctx context.Context, tx pgx.Tx, schemaName string) error {
	if _, err := tx.Exec(ctx, lockSQL, lockNamespace, schemaName); err != nil {
		return fmt.Errorf("lock schema %s: %w", schemaName, err)
	}
	return nil
}

// Drop drops the schema and everything in it (DROP SCHEMA IF EXISTS ...
// CASCADE) under the tenant lock. Dropping a missing schema is not an
// error.
func Drop(ctx context.Context, pool *pgxpool.Pool, schemaName string) error {
	quoted, err := quoteSchema(schemaName)
	if err != nil {
		return fmt.Errorf("drop schema: %w", err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := lockExistence(ctx, tx, schemaName); err != nil {
			return err
		}
		if err := lockTenant(ctx, tx, schemaName); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DROP SCHEMA IF EXISTS "+quoted+" CASCADE")
		return err
	})
	if err != nil {
		return fmt.Errorf("drop schema %s: %w", schemaName, err)
	}
	return nil
}

// DropOwned is Drop for the tenant owner: under the tenant lock it drops
// the schema only when it records owner, or no owner (created before
// owners were recorded, or by Migrate). A schema recorded for another
// tenant (a new tenant given the same slug since) is left alone: it
// returns false and no error. It reports whether it dropped a schema;
// a missing schema is not an error. Its transaction runs at read committed
// whatever the database's default_transaction_isolation, so a drop that
// waited for the tenant's lock reads the owner committed meanwhile, and
// waits for the locks, and drops, until ctx's deadline, whatever
// lock_timeout or statement_timeout the database or role sets.
func DropOwned(ctx context.Context, pool *pgxpool.Pool, schemaName, owner string) (bool, error) {
	return dropOwned(ctx, pool, schemaName, owner, false)
}

// DropRecorded is DropOwned for a schema that must record owner: one that
// records no owner is left alone too. It drops the copies a tenant's
// killed move left in a database the tenant is not placed on, where a
// schema of that name without an owner is not known to be the tenant's.
func DropRecorded(ctx context.Context, pool *pgxpool.Pool, schemaName, owner string) (bool, error) {
	return dropOwned(ctx, pool, schemaName, owner, true)
}

// dropOwned is DropOwned, and DropRecorded when recorded is set.
func dropOwned(ctx context.Context, pool *pgxpool.Pool, schemaName, owner string, recorded bool) (bool, error) {
	quoted, err := quoteSchema(schemaName)
	if err != nil {
		return false, fmt.Errorf("drop schema: %w", err)
	}
	dropped := false
	// At read committed whatever the database's
	// default_transaction_isolation: the owner read after the locks must
	// be the one a creation that held them committed, not a snapshot's
	// from before the wait.
	err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		// The locks and the DROP until ctx's deadline, not the database's
		// or role's lock_timeout or statement_timeout: a destroy cut by a
		// guard shorter than its drop would fail at every retry.
		if err := waitForLocks(ctx, tx); err != nil {
			return err
		}
		if err := lockExistence(ctx, tx, schemaName); err != nil {
			return err
		}
		if err := lockTenant(ctx, tx, schemaName); err != nil {
			return err
		}
		exists, got, err := readOwner(ctx, tx, schemaName)
		if err != nil {
			return fmt.Errorf("read owner: %w", err)
		}
		if !exists || (got != "" && got != owner) || (recorded && got == "") {
			return nil
		}
		if _, err := tx.Exec(ctx, "DROP SCHEMA "+quoted+" CASCADE"); err != nil {
			return err
		}
		dropped = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("drop schema %s of %s: %w", schemaName, owner, err)
	}
	return dropped, nil
}

// Exists reports whether the schema exists.
func Exists(ctx context.Context, pool *pgxpool.Pool, schemaName string) (bool, error) {
	if _, err := quoteSchema(schemaName); err != nil {
		return false, fmt.Errorf("schema exists: %w", err)
	}
	ok, err := schemaExists(ctx, pool, schemaName)
	if err != nil {
		return false, fmt.Errorf("schema exists %s: %w", schemaName, err)
	}
	return ok, nil
}

// querier is what pool, conn and tx have in common.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func schemaExists(ctx context.Context, q querier, schemaName string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx,
		"SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
		schemaName).Scan(&ok)
	return ok, err
}

// Version returns the schema's migration version: the highest applied
// version, 0 if the schema or its version table does not exist.
func Version(ctx context.Context, pool *pgxpool.Pool, schemaName string) (int, error) {
	quoted, err := quoteSchema(schemaName)
	if err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	v, err := readVersion(ctx, pool, quoted)
	if err != nil {
		return 0, fmt.Errorf("schema version %s: %w", schemaName, err)
	}
	return v, nil
}

// readVersion reads max(version) of quoted.schema_migrations; a missing
// schema or table is version 0. QueryExecModeExec: the SQL text differs per
// tenant, so caching it as a prepared statement would only churn pgx's
// statement cache (and it costs one round trip either way).
func readVersion(ctx context.Context, q querier, quoted string) (int, error) {
	var v int
	err := q.QueryRow(ctx,
		"SELECT coalesce(max(version), 0) FROM "+quoted+".schema_migrations",
		pgx.QueryExecModeExec).Scan(&v)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "3F000" || pgErr.Code == "42P01") {
			// invalid_schema_name, undefined_table
			return 0, nil
		}
		return 0, err
	}
	return v, nil
}
