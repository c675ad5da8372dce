package schema

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/tenantctx"
)

// Errors of MigrateWith; match them with errors.Is.
var (
	// ErrNoSchema: the schema does not exist (or was dropped while the
	// migration ran) and the call may not create it.
	ErrNoSchema = errors.New("schema does not exist")
	// ErrSchemaTaken: the schema exists but was not created for the owner
	// the call names (another tenant's, or one that records no owner), so
	// the call does not adopt it.
	ErrSchemaTaken = errors.New("schema exists and belongs to no one or someone else")
)

// ownerPrefix starts the comment that records a schema's owner
// (COMMENT ON SCHEMA ... IS 'tenantworker tenant <id>').
const ownerPrefix = "tenantworker tenant "

// Creation lets MigrateWith create a missing schema for one tenant.
type Creation struct {
	// Owner is the id of the tenant the schema is for. A schema the call
	// creates records it (COMMENT ON SCHEMA); a schema that exists already
	// must record it, or the call fails with ErrSchemaTaken and changes
	// nothing: a new tenant never adopts a schema left over from another
	// (P17 in docs/architecture.md).
	Owner string
	// Allow, when set, is asked right before the schema is created: in the
	// transaction that creates it, while that transaction holds the tenant's
	// lock (the lock Drop takes). An error refuses the creation; it is
	// returned wrapped and nothing is created. It must decide on
	// authoritative state read in tx (not a cache), so that what it allowed
	// still holds when the creation commits.
	Allow func(ctx context.Context, tx pgx.Tx) error
}

// MigrateOptions are the options of MigrateWith.
type MigrateOptions struct {
	// Target is the version to migrate to; 0 means LatestVersion().
	Target int
	// Create, when set, lets the call create a missing schema for
	// Create.Owner. Without it a missing schema is ErrNoSchema: the
	// migration of an existing tenant never recreates a schema that was
	// dropped (P17 in docs/architecture.md).
	Create *Creation
	// Owner, when set (and Create is not), is the existing tenant whose
	// schema the call migrates: a schema that records another tenant (the
	// slug's next tenant, given the slug after this one was deleted) is
	// ErrSchemaTaken and nothing is applied to it; one that records no
	// owner (made before owners were recorded) is migrated. It is checked
	// before the first step and again under the tenant's lock in every
	// step, as Create.Owner is; a schema with nothing pending is left
	// alone unchecked (one query, as for Migrate).
	Owner string
}

// creation is what a migration may do about a missing schema.
type creation struct {
	allowed bool   // a missing schema may be created
	owner   string // recorded on a created schema, required of an existing one
	allow   func(ctx context.Context, tx pgx.Tx) error
	// fresh: the schema must not exist yet (ErrSchemaExists), as a copy's
	// target: the call creates it, or fails without touching what is there.
	fresh bool
	// unowned: an existing schema that records no owner passes the check
	// of owner (MigrateOptions.Owner: an existing tenant's schema may
	// predate owners).
	unowned bool
}

// createAnything is Migrate's creation: any missing schema, no owner.
var createAnything = creation{allowed: true}

// MigrateWith is Migrate for the tenant lifecycle: it applies pending
// migrations up to opts.Target like Migrate, but creates a missing schema
// only with opts.Create, for its owner and when its Allow agrees, and never
// migrates a schema that is not the owner's.
//
// With opts.Create, the owner is checked whenever the schema exists: once
// before anything else (a schema already at the target version is a no-op
// only if it is the owner's) and again under the tenant's lock in every
// step, so that a schema dropped and made again for another tenant
// between two steps gets none of them; with opts.Owner likewise, but a
// schema with nothing pending is a no-op unchecked. Errors:
// ErrNoSchema, ErrSchemaTaken, Allow's error, or the database's.
func MigrateWith(ctx context.Context, pool *pgxpool.Pool, schemaName string, opts MigrateOptions) (MigrateResult, error) {
	c := creation{}
	switch {
	case opts.Create != nil:
		if err := tenantctx.ValidateID(opts.Create.Owner); err != nil {
			return MigrateResult{Schema: schemaName}, fmt.Errorf("migrate %s: owner: %w", schemaName, err)
		}
		c = creation{allowed: true, owner: opts.Create.Owner, allow: opts.Create.Allow}
	case opts.Owner != "":
		if err := tenantctx.ValidateID(opts.Owner); err != nil {
			return MigrateResult{Schema: schemaName}, fmt.Errorf("migrate %s: owner: %w", schemaName, err)
		}
		c = creation{owner: opts.Owner, unowned: true}
	}
	return migrateWith(ctx, pool, schemaName, opts.Target, embedded, c)
}

// Owner reports whether the schema exists and the id of the tenant it was
// created for by MigrateWith; owner is "" for a schema that records none
// (created by Migrate, by hand, or before owners were recorded).
func Owner(ctx context.Context, pool *pgxpool.Pool, schemaName string) (exists bool, owner string, err error) {
	if _, err := quoteSchema(schemaName); err != nil {
		return false, "", fmt.Errorf("schema owner: %w", err)
	}
	exists, owner, err = readOwner(ctx, pool, schemaName)
	if err != nil {
		return false, "", fmt.Errorf("schema owner %s: %w", schemaName, err)
	}
	return exists, owner, nil
}

// readOwner reads the owner comment of a schema.
func readOwner(ctx context.Context, q querier, schemaName string) (exists bool, owner string, err error) {
	var comment *string
	err = q.QueryRow(ctx,
		"SELECT pg_catalog.obj_description(oid, 'pg_namespace') FROM pg_catalog.pg_namespace WHERE nspname = $1",
		schemaName).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, "", nil
	}
	if err != nil {
		return false, "", err
	}
	if comment != nil {
		owner, _ = strings.CutPrefix(*comment, ownerPrefix)
		if owner == *comment || tenantctx.ValidateID(owner) != nil {
			owner = ""
		}
	}
	return true, owner, nil
}

// checkOwner returns ErrSchemaTaken unless the existing schema records
// c.owner (or, with c.unowned, no owner). A missing schema passes: the
// caller decides about creating it.
func (c creation) checkOwner(ctx context.Context, q querier, schemaName string) error {
	owner := c.owner
	exists, got, err := readOwner(ctx, q, schemaName)
	switch {
	case err != nil:
		return fmt.Errorf("read owner: %w", err)
	case !exists || got == owner || (got == "" && c.unowned):
		return nil
	case got == "":
		return fmt.Errorf("%w: %s records no owner, want %s", ErrSchemaTaken, schemaName, owner)
	}
	return fmt.Errorf("%w: %s belongs to %s, not %s", ErrSchemaTaken, schemaName, got, owner)
}

// createSchema creates the schema in tx, which holds the tenant's lock,
// if c allows it, and records c.owner on it.
func createSchema(ctx context.Context, tx pgx.Tx, quoted string, c creation) error {
	if !c.allowed {
		return ErrNoSchema
	}
	if c.allow != nil {
		if err := c.allow(ctx, tx); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, "CREATE SCHEMA "+quoted); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	if c.owner == "" {
		return nil
	}
	// COMMENT takes no bind parameters. The owner passed
	// tenantctx.ValidateID ([a-z0-9_-]), and is quoted as a literal.
	if err := tenantctx.ValidateID(c.owner); err != nil {
		return fmt.Errorf("record owner: %w", err)
	}
	literal := "'" + strings.ReplaceAll(ownerPrefix+c.owner, "'", "''") + "'"
	if _, err := tx.Exec(ctx, "COMMENT ON SCHEMA "+quoted+" IS "+literal); err != nil {
		return fmt.Errorf("record owner: %w", err)
	}
	return nil
}
