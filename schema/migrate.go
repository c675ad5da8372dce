package schema

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Migration is one step of the tenant schema, from an embedded SQL file
// migrations/NNNN_name.sql.
type Migration struct {
	// Version is the step's number: 1, 2, ... without gaps.
	Version int
	// Name is the file name's part after the number, e.g. "init".
	Name string

	sql string
	// run, when set, runs after sql in the step's transaction. Tests use it
	// to observe and slow down steps.
	run func(ctx context.Context, tx pgx.Tx) error
}

// MigrateResult reports what Migrate did to one schema.
type MigrateResult struct {
	// Schema is the migrated schema's name.
	Schema string
	// Created is true when this call created the schema.
	Created bool
	// From is the version found before migrating, To the version after.
	From, To int
	// Applied lists the versions this call applied, in order. Steps that a
	// concurrent Migrate of the same schema applied first are not listed.
	Applied []int
}

//go:embed migrations/*.sql
var migrationFiles embed.FS

// embedded is the tenant schema's migration set, checked at start-up.
var embedded = mustLoadMigrations(migrationFiles)

// Migrations lists the embedded migrations in order (for docs and the CLI).
func Migrations() []Migration {
	out := make([]Migration, len(embedded))
	for i, m := range embedded {
		out[i] = Migration{Version: m.Version, Name: m.Name}
	}
	return out
}

// LatestVersion is the version of the last embedded migration.
func LatestVersion() int { return len(embedded) }

var migrationName = regexp.MustCompile(`^([0-9]{4})_([a-z0-9_]+)\.sql$`)

func mustLoadMigrations(fsys fs.FS) []Migration {
	ms, err := loadMigrations(fsys)
	if err != nil {
		panic("schema: " + err.Error())
	}
	return ms
}

// loadMigrations reads migrations/NNNN_name.sql files and checks that the
// versions run 1, 2, ... without gaps or duplicates.
func loadMigrations(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	var ms []Migration
	for _, name := range names {
		m := migrationName.FindStringSubmatch(path.Base(name))
		if m == nil {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", name)
		}
		v, _ := strconv.Atoi(m[1])
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		ms = append(ms, Migration{Version: v, Name: m[2], sql: string(body)})
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %04d_%s: want version %d (versions start at 1 without gaps)", m.Version, m.Name, i+1)
		}
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("no migrations")
	}
	return ms, nil
}

// Migrate creates the schema if missing and applies pending migrations up
// to target (0 = LatestVersion()). It never goes down: a schema already at
// or above target is left alone. It creates any missing schema and records
// no owner: tests and tools use it; the tenant lifecycle uses MigrateWith,
// which creates a schema only for a tenant allowed to have one.
//
// Nothing pending costs one query (the version read), without a lock.
// Otherwise each step runs in its own transaction that first takes the
// tenant's transaction-scoped advisory lock (pg_advisory_xact_lock keyed by
// the schema name, not one global key), then reads the version again and
// applies the step only if it is still pending, with search_path pinned to
// the schema by set_config(..., true), and records it in
// <schema>.schema_migrations. So concurrent Migrate calls for one tenant
// apply each step once, different tenants migrate in parallel, and it all
// works behind PgBouncer in transaction mode. The first step of a run that
// found version 0 also creates the schema and the version table, so a
// failed first migration leaves no half-made schema behind. Steps run in a
// transaction: no CREATE INDEX CONCURRENTLY. A step's statements wait at
// most stepLockTimeout (5 s) for a lock on the tenant's tables: a step
// that cannot get one (a long transaction of the app holds the table)
// fails with lock_not_available and changes nothing, rather than
// queueing the tenant's traffic behind its DDL.
func Migrate(ctx context.Context, pool *pgxpool.Pool, schemaName string, target int) (MigrateResult, error) {
	return migrate(ctx, pool, schemaName, target, embedded)
}

func migrate(ctx context.Context, pool *pgxpool.Pool, schemaName string, target int, set []Migration) (MigrateResult, error) {
	return migrateWith(ctx, pool, schemaName, target, set, createAnything)
}

func migrateWith(ctx context.Context, pool *pgxpool.Pool, schemaName string, target int, set []Migration, c creation) (MigrateResult, error) {
	res := MigrateResult{Schema: schemaName}
	quoted, err := quoteSchema(schemaName)
	if err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	if target == 0 {
		target = len(set)
	}
	if target < 0 || target > len(set) {
		return res, fmt.Errorf("migrate %s: target version %d out of range 0..%d", schemaName, target, len(set))
	}
	v, err := readVersion(ctx, pool, quoted)
	if err != nil {
		return res, fmt.Errorf("migrate %s: read version: %w", schemaName, err)
	}
	res.From, res.To = v, v
	if v > 0 && c.fresh {
		return res, fmt.Errorf("migrate %s: %w", schemaName, ErrSchemaExists)
	}
	if v > 0 && c.owner != "" {
		if err := checkOwner(ctx, pool, schemaName, c.owner); err != nil {
			return res, fmt.Errorf("migrate %s: %w", schemaName, err)
		}
	}
	if v >= target {
		return res, nil
	}
	ensure := v == 0
	for _, m := range set[v:target] {
		applied, created, cur, err := migrateStep(ctx, pool, schemaName, quoted, m, ensure, c)
		if err != nil {
			return res, fmt.Errorf("migrate %s: version %d (%s): %w", schemaName, m.Version, m.Name, err)
		}
		ensure = false
		res.Created = res.Created || created
		res.To = max(res.To, cur)
		if applied {
			res.Applied = append(res.Applied, m.Version)
		}
	}
	return res, nil
}

// stepLockTimeout bounds how long a step's statements wait for a lock on
// the tenant's tables (lock_timeout, SET LOCAL). DDL such as ALTER TABLE
// needs an ACCESS EXCLUSIVE lock, and while it waits for one (behind a
// long transaction of the app, say) every later statement on that table,
// the tenant's reads included, queues behind it: without a bound the
// tenant's traffic would stop until the task's deadline. Past it the step
// fails with lock_not_available (SQLSTATE 55P03), is rolled back whole,
// and the task is retried later.
const stepLockTimeout = 5 * time.Second

// lockTimeoutSQL sets lock_timeout (milliseconds, $1) until the end of the
// transaction.
const lockTimeoutSQL = "SELECT pg_catalog.set_config('lock_timeout', $1, true)"

// ErrRefusedByData: a step's own SQL failed on the tenant's rows (a data
// exception, an integrity violation, or an error the step raised, such as
// version 4's check for customers sharing an email address). Run again,
// it fails the same way until someone changes the data; match it with
// errors.Is.
var ErrRefusedByData = errors.New("the tenant's data refuses the step")

// refusedByData reports whether err, from a step's SQL, is one the
// tenant's data causes: SQLSTATE class 22 (data exception), class 23
// (integrity constraint violation) or P0001 (raise_exception). Lock
// timeouts, deadlocks, lost connections and cancellations are not.
func refusedByData(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23") || pgErr.Code == "P0001"
}

// hintOf returns the HINT of err, a step's PostgreSQL error, as " (hint:
// ...)", or "". pgconn's error text leaves the hint out, and a step that
// refuses the tenant's data says in it what the operator should do
// (version 4: merge the customers that share an address). Only the hint:
// the error's detail may quote the tenant's rows.
func hintOf(err error) string {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Hint == "" {
		return ""
	}
	return " (hint: " + pgErr.Hint + ")"
}

// migrationsTableSQL is the per-tenant version table (schema-qualified
// by the caller).
const migrationsTableSQL = ".schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"

// migrateStep applies m in one transaction under the tenant lock if it is
// still pending there. With ensure (the run found version 0) it first
// creates the schema if missing and c allows it, or checks c's owner on
// the existing one. It returns whether it applied m, whether it created the
// schema, and the version after the step.
func migrateStep(ctx context.Context, pool *pgxpool.Pool, schemaName, quoted string, m Migration, ensure bool, c creation) (applied, created bool, version int, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		applied, created, version = false, false, 0
		if ensure {
			// It may create the schema: not while a unit is pinned to a
			// schema of that name (see existenceLockKey).
			if err := lockExistence(ctx, tx, schemaName); err != nil {
				return err
			}
		}
		if err := lockTenant(ctx, tx, schemaName); err != nil {
			return err
		}
		if ensure {
			exists, err := schemaExists(ctx, tx, schemaName)
			if err != nil {
				return fmt.Errorf("check schema: %w", err)
			}
			if !exists {
				if err := createSchema(ctx, tx, quoted, c); err != nil {
					return err
				}
				created = true
			} else if c.fresh {
				return ErrSchemaExists
			} else if c.owner != "" {
				if err := checkOwner(ctx, tx, schemaName, c.owner); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+quoted+migrationsTableSQL); err != nil {
				return fmt.Errorf("create version table: %w", err)
			}
		}
		cur, err := readVersion(ctx, tx, quoted)
		if err != nil {
			return fmt.Errorf("read version: %w", err)
		}
		version = cur
		if cur >= m.Version {
			return nil // a concurrent Migrate applied it
		}
		if cur == 0 && !ensure {
			// Dropped since this run created or found it: never recreated.
			return fmt.Errorf("%w (dropped while it was migrated)", ErrNoSchema)
		}
		if cur != m.Version-1 {
			return fmt.Errorf("schema is at version %d", cur)
		}
		if _, err := tx.Exec(ctx, pinSQL, quoted); err != nil {
			return fmt.Errorf("pin search_path: %w", err)
		}
		// Only now, holding the tenant's lock: a concurrent Migrate of
		// the tenant still waits for that lock as long as it takes.
		if _, err := tx.Exec(ctx, lockTimeoutSQL, strconv.FormatInt(stepLockTimeout.Milliseconds(), 10)); err != nil {
			return fmt.Errorf("set lock_timeout: %w", err)
		}
		if m.sql != "" {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				if refusedByData(err) {
					return fmt.Errorf("%w: %w%s", ErrRefusedByData, err, hintOf(err))
				}
				return err
			}
		}
		if m.run != nil {
			if err := m.run(ctx, tx); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+quoted+".schema_migrations (version) VALUES ($1)",
			pgx.QueryExecModeExec, m.Version); err != nil {
			return fmt.Errorf("record version: %w", err)
		}
		applied, version = true, m.Version
		return nil
	})
	if err != nil {
		return false, false, 0, err
	}
	return applied, created, version, nil
}
