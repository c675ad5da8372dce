package schema

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
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

// checksum is the sha256 (hex) of the step's SQL: of its file's bytes for
// an embedded migration. A schema records it with the step's name when it
// applies the step.
func (m Migration) checksum() string {
	sum := sha256.Sum256([]byte(m.sql))
	return hex.EncodeToString(sum[:])
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
// applies the step only if it is still pending (the transaction runs at
// read committed whatever the database's default_transaction_isolation, so
// that read sees the step committed while it waited), with search_path pinned to
// the schema by set_config(..., true), and records it in
// <schema>.schema_migrations with its name and the sha256 of its SQL.
// Before applying a step it compares what the schema recorded for the
// versions it applied with this set's migrations of those versions: one
// renumbered or edited since fails the step with ErrMigrationMismatch,
// changing nothing (rows recorded before names and checksums were are
// trusted). So concurrent Migrate calls for one tenant
// apply each step once, different tenants migrate in parallel, and it all
// works behind PgBouncer in transaction mode. The first step of a run that
// found version 0 also creates the schema and the version table, so a
// failed first migration leaves no half-made schema behind. A step waits
// for the tenant's locks until ctx's deadline, whatever lock_timeout or
// statement_timeout the database or role sets. Steps run in a
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
	if v >= target && c.unowned {
		// An existing tenant's schema with nothing pending: one query, as
		// for Migrate; nothing is applied to it, whoever it belongs to.
		return res, nil
	}
	if v > 0 && c.owner != "" {
		if err := c.checkOwner(ctx, pool, schemaName); err != nil {
			return res, fmt.Errorf("migrate %s: %w", schemaName, err)
		}
	}
	if v >= target {
		return res, nil
	}
	ensure := v == 0
	for _, m := range set[v:target] {
		applied, created, cur, err := migrateStep(ctx, pool, schemaName, quoted, set, m, ensure, c)
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
//
// A step's statements run under statement_timeout set the same way (SET
// LOCAL, once it holds the tenant's lock) to the time left before ctx's
// deadline, or none without a deadline, overriding the database's or
// role's statement_timeout: an operator's guard of seconds would cut a
// step that rewrites a big table, and the step, rolled back, would fail
// the same way at every retry.
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

// ErrMigrationMismatch: a version the schema recorded as applied was
// applied under another name or from other SQL than this release's
// migration of that version (a released migration was renumbered or
// edited). The step fails without changing anything, and fails the same
// way on every run until the release is fixed; match it with errors.Is.
var ErrMigrationMismatch = errors.New("an applied migration differs from this release's")

// migrationsTableSQL is the per-tenant version table (schema-qualified
// by the caller). name and checksum record which migration a version was
// (Migration.Name, Migration.checksum); rows written before they existed
// have them NULL (unknown).
const migrationsTableSQL = ".schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(), name text, checksum text)"

// addRecordColumnsSQL adds name and checksum to a version table made
// before they existed (schema-qualified by the caller).
const addRecordColumnsSQL = ".schema_migrations ADD COLUMN IF NOT EXISTS name text, ADD COLUMN IF NOT EXISTS checksum text"

// checkRecorded compares what quoted.schema_migrations recorded for each
// applied version (name and checksum, where not NULL) with set's
// migration of that version, and returns ErrMigrationMismatch on the first
// difference. Rows without a name or checksum (written before they were
// recorded) are trusted, as are versions beyond set. It reads the rows as
// jsonb: a table made before the columns existed has none to compare.
func checkRecorded(ctx context.Context, q pgx.Tx, schemaName, quoted string, set []Migration) error {
	rows, err := q.Query(ctx, "SELECT r.version, to_jsonb(r)->>'name', to_jsonb(r)->>'checksum' FROM "+quoted+
		".schema_migrations r ORDER BY r.version", pgx.QueryExecModeExec)
	if err != nil {
		return fmt.Errorf("read applied migrations: %w", err)
	}
	var version int
	var name, sum *string
	var mismatch error
	_, err = pgx.ForEachRow(rows, []any{&version, &name, &sum}, func() error {
		if mismatch != nil || version < 1 || version > len(set) {
			return nil
		}
		m := set[version-1]
		if (name == nil || *name == m.Name) && (sum == nil || *sum == m.checksum()) {
			return nil
		}
		mismatch = fmt.Errorf("%w: schema %s recorded version %d as %s, this release's version %d is %s: "+
			"a released migration must never be renumbered or edited; restore it as released and add a new migration for the change",
			ErrMigrationMismatch, schemaName, version, describeRecord(name, sum), version, describeRecord(&m.Name, ptr(m.checksum())))
		return nil
	})
	if err != nil {
		return fmt.Errorf("read applied migrations: %w", err)
	}
	return mismatch
}

// describeRecord names a migration by name and checksum for an error
// message, saying "unknown" for what was not recorded.
func describeRecord(name, sum *string) string {
	n, s := "unknown", "unknown"
	if name != nil {
		n = fmt.Sprintf("%q", *name)
	}
	if sum != nil {
		s = *sum
	}
	return n + " (sha256 " + s + ")"
}

// ptr returns a pointer to a copy of v.
func ptr[T any](v T) *T { return &v }

// hasRecordColumns reports whether quoted.schema_migrations has the name
// and checksum columns.
func hasRecordColumns(ctx context.Context, q querier, quoted string) (bool, error) {
	var n int
	err := q.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_attribute
		WHERE attrelid = pg_catalog.to_regclass($1) AND attname IN ('name', 'checksum') AND attnum > 0 AND NOT attisdropped`,
		pgx.QueryExecModeExec, quoted+".schema_migrations").Scan(&n)
	return n == 2, err
}

// migrateStep applies m, a migration of set, in one transaction under the
// tenant lock if it is still pending there. Before it does, it checks the
// versions applied already against set (checkRecorded); it records m with
// its name and checksum, adding those columns to a version table made
// before they existed. With ensure (the run found version 0) it first
// creates the schema if missing and c allows it, or checks c's owner on
// the existing one; without it, it checks c's owner (when c names one)
// all the same. It returns whether it applied m, whether it created the
// schema, and the version after the step.
func migrateStep(ctx context.Context, pool *pgxpool.Pool, schemaName, quoted string, set []Migration, m Migration, ensure bool, c creation) (applied, created bool, version int, err error) {
	// At read committed whatever the database's
	// default_transaction_isolation: the checks after the tenant's lock
	// (the schema's existence, the version) must see what the step that
	// held the lock before committed, not a snapshot from before the wait.
	err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		applied, created, version = false, false, 0
		// The locks below are waited for until ctx's deadline, not for
		// the database's or role's lock_timeout or statement_timeout: a
		// concurrent Migrate's step may hold them for minutes.
		if err := waitForLocks(ctx, tx); err != nil {
			return err
		}
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
				if err := c.checkOwner(ctx, tx, schemaName); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+quoted+migrationsTableSQL); err != nil {
				return fmt.Errorf("create version table: %w", err)
			}
		} else if c.owner != "" {
			// Again in every step: the schema may have been dropped and
			// made again for another tenant (its slug's next one) since
			// the last step committed.
			if err := c.checkOwner(ctx, tx, schemaName); err != nil {
				return err
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
		if cur > 0 {
			// Later steps build on the earlier ones: not on another
			// release's steps of the same numbers.
			if err := checkRecorded(ctx, tx, schemaName, quoted, set); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, pinSQL, quoted); err != nil {
			return fmt.Errorf("pin search_path: %w", err)
		}
		// Only now, holding the tenant's lock: a concurrent Migrate of
		// the tenant still waits for that lock as long as it takes.
		if _, err := tx.Exec(ctx, lockTimeoutSQL, strconv.FormatInt(stepLockTimeout.Milliseconds(), 10)); err != nil {
			return fmt.Errorf("set lock_timeout: %w", err)
		}
		// The step's own bound, not the operator's statement_timeout: a
		// step rewriting a big table outlasts a guard of seconds, and cut
		// by it the step would fail the same way at every retry.
		if _, err := tx.Exec(ctx, statementTimeoutSQL, strconv.FormatInt(timeoutMillis(deadlineTimeout(ctx)), 10)); err != nil {
			return fmt.Errorf("set statement_timeout: %w", err)
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
		ok, err := hasRecordColumns(ctx, tx, quoted)
		if err != nil {
			return fmt.Errorf("check version table: %w", err)
		}
		if !ok {
			// A table from before: altered once, by its next step.
			if _, err := tx.Exec(ctx, "ALTER TABLE "+quoted+addRecordColumnsSQL); err != nil {
				return fmt.Errorf("add name and checksum to the version table: %w", err)
			}
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+quoted+".schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
			pgx.QueryExecModeExec, m.Version, m.Name, m.checksum()); err != nil {
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
