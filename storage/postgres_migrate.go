package storage

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// catalogMigrations holds the catalog's SQL migrations, named
// NNNN_description.sql and applied in version order.
//
//go:embed migrations/*.sql
var catalogMigrations embed.FS

// catalogLockKey is the pg_advisory_xact_lock key serializing catalog
// migrations. The catalog is a single schema, so one fixed key is right
// here (tenant schemas use a lock per tenant).
const catalogLockKey int64 = 0x74656e616e637931 // "tenancy1"

// catalogLockPolicy bounds how a catalog migration step waits for locks
// on the catalog's tables.
type catalogLockPolicy struct {
	// timeout is the step's lock_timeout (SET LOCAL, once it holds the
	// advisory lock). DDL such as ALTER TABLE needs an ACCESS EXCLUSIVE
	// lock, and while it waits for one (behind a long transaction) every
	// later statement on that table, the tenant lookups of every running
	// process included, queues behind it: without a bound they would wait
	// as long as the long transaction lasts.
	timeout time.Duration
	// attempts is how many times a step that timed out waiting for a lock
	// is tried (rolled back whole each time) before start-up fails.
	attempts int
	// backoff is the wait before the second attempt, doubled after each.
	backoff time.Duration
}

// defaultCatalogLockPolicy: a step waits at most 5 s for a lock, as a
// tenant migration step does, and is tried 3 times, 1 s then 2 s apart.
var defaultCatalogLockPolicy = catalogLockPolicy{timeout: 5 * time.Second, attempts: 3, backoff: time.Second}

// pgLockNotAvailable is lock_not_available, the error of a statement that
// waited lock_timeout for a lock.
const pgLockNotAvailable = "55P03"

// catalogMigration is one embedded migration.
type catalogMigration struct {
	version int
	name    string
	sql     string
}

// loadCatalogMigrations reads and orders the embedded migrations.
func loadCatalogMigrations() ([]catalogMigration, error) {
	entries, err := fs.ReadDir(catalogMigrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read catalog migrations: %w", err)
	}
	var ms []catalogMigration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		if !ok || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("catalog migration %s: want NNNN_description.sql", name)
		}
		v, err := strconv.Atoi(num)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("catalog migration %s: bad version %q", name, num)
		}
		b, err := catalogMigrations.ReadFile(path.Join("migrations", name))
		if err != nil {
			return nil, fmt.Errorf("read catalog migration %s: %w", name, err)
		}
		ms = append(ms, catalogMigration{version: v, name: name, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b catalogMigration) int { return a.version - b.version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("catalog migrations %s and %s: duplicate version", ms[i-1].name, ms[i].name)
		}
	}
	return ms, nil
}

// CatalogVersion is the catalog schema version this build migrates to.
func CatalogVersion() int {
	ms, err := loadCatalogMigrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// MigrateCatalog brings the `tenancy` schema on pool up to date: pending
// embedded migrations are applied, each in its own transaction under a
// transaction-scoped advisory lock, so processes starting together apply
// each migration exactly once. Applied versions are recorded in
// tenancy.schema_migrations, and each one applied is logged to logger (nil
// discards). When nothing is pending (the usual start) it only reads
// tenancy.schema_migrations: no lock, no DDL, so a role without CREATE on
// the database can start. Each binary calls it once at start, on the pool
// for schema changes.
//
// A step waits at most 5 s for a lock on the catalog's tables
// (lock_timeout), so that its DDL never holds every tenant lookup behind
// a long transaction; it is then rolled back, logged and tried again
// after a backoff, 3 times in all, and MigrateCatalog fails with
// lock_not_available (SQLSTATE 55P03) naming the migration.
func MigrateCatalog(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) error {
	return migrateCatalog(ctx, pool, logger, defaultCatalogLockPolicy)
}

// migrateCatalog is MigrateCatalog with the lock policy p.
func migrateCatalog(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger, p catalogLockPolicy) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ms, err := loadCatalogMigrations()
	if err != nil {
		return fmt.Errorf("migrate catalog: %w", err)
	}
	applied, err := appliedVersions(ctx, pool)
	if err != nil {
		return fmt.Errorf("migrate catalog: %w", err)
	}
	warnForeignMigrations(ctx, logger, ms, applied)
	for _, m := range ms {
		if _, ok := applied[m.version]; ok {
			continue
		}
		done, err := applyMigrationRetrying(ctx, pool, logger, m, p)
		if err != nil {
			return fmt.Errorf("migrate catalog: %w", err)
		}
		if done {
			logger.InfoContext(ctx, "applied catalog migration", slog.Int("version", m.version), slog.String("name", m.name))
		}
	}
	return nil
}

// appliedVersions returns the versions recorded in
// tenancy.schema_migrations, with their names; none when the table does
// not exist yet.
func appliedVersions(ctx context.Context, pool *pgxpool.Pool) (map[int]string, error) {
	var exists bool
	if err := pool.QueryRow(ctx,
		`SELECT pg_catalog.to_regclass('tenancy.schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, fmt.Errorf("read catalog version: %w", err)
	}
	applied := make(map[int]string)
	if !exists {
		return applied, nil
	}
	rows, err := pool.Query(ctx, `SELECT version, name FROM tenancy.schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("read catalog version: %w", err)
	}
	type row struct {
		Version int32
		Name    string
	}
	recorded, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		return nil, fmt.Errorf("read catalog version: %w", err)
	}
	for _, r := range recorded {
		applied[int(r.Version)] = r.Name
	}
	return applied, nil
}

// warnForeignMigrations logs what the catalog records that this build
// does not know: versions it has no migration for (a newer release
// migrated the catalog, and this older binary starts on it: during a
// rolling deploy or after a rollback), and versions recorded under
// another name (a migration renumbered between releases, whose own
// migration this build would then never apply). The process starts all
// the same: catalog migrations only add, so an older release keeps
// working on a newer catalog, but an operator should know.
func warnForeignMigrations(ctx context.Context, logger *slog.Logger, ms []catalogMigration, applied map[int]string) {
	known := make(map[int]string, len(ms))
	for _, m := range ms {
		known[m.version] = m.name
	}
	var newer []int
	for v, name := range applied {
		own, ok := known[v]
		switch {
		case !ok:
			newer = append(newer, v)
		case name != own:
			logger.WarnContext(ctx, "catalog migration recorded under another name: this release's migration of that version is not applied",
				slog.Int("version", v), slog.String("recorded", name), slog.String("this_release", own))
		}
	}
	if len(newer) > 0 {
		slices.Sort(newer)
		logger.WarnContext(ctx, "the catalog has migrations this release does not know: a newer release migrated it",
			slog.Any("versions", newer), slog.Int("this_release_version", CatalogVersion()))
	}
}

// applyMigrationRetrying applies m (applyMigration) and tries it again,
// after a backoff, while it fails waiting for a lock on the catalog's
// tables, up to p.attempts times.
func applyMigrationRetrying(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger, m catalogMigration, p catalogLockPolicy) (bool, error) {
	wait := p.backoff
	for attempt := 1; ; attempt++ {
		done, err := applyMigration(ctx, pool, m, p.timeout)
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != pgLockNotAvailable {
			return done, err
		}
		if attempt >= max(p.attempts, 1) {
			return false, fmt.Errorf("%w (%d attempts, each waiting %v for a lock on the catalog's tables: a long transaction holds one, see pg_stat_activity; end it and start again)",
				err, attempt, p.timeout)
		}
		logger.WarnContext(ctx, "catalog migration waited too long for a lock on the catalog's tables (a long transaction holds one): retrying",
			slog.String("name", m.name), slog.Int("attempt", attempt), slog.Duration("lock_timeout", p.timeout), slog.Duration("backoff", wait))
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return false, fmt.Errorf("apply catalog migration %s: %w", m.name, ctx.Err())
		case <-timer.C:
		}
		wait *= 2
	}
}

// applyMigration applies m in one transaction unless it is recorded
// already (checked again under the lock, at read committed whatever the
// database's default_transaction_isolation: another process may have
// applied it since appliedVersions), and reports whether it did. The advisory lock
// is taken before the schema and version table are created, so concurrent
// starts never race on CREATE ... IF NOT EXISTS. Once it holds that lock
// (a concurrent start still waits for it as long as it takes, whatever
// lock_timeout the database or role sets), a statement waits at most
// lockTimeout for a table lock. No statement_timeout applies but ctx's:
// not one the database or role sets.
func applyMigration(ctx context.Context, pool *pgxpool.Pool, m catalogMigration, lockTimeout time.Duration) (bool, error) {
	applied := false
	// At read committed whatever the database's
	// default_transaction_isolation: the version read after the lock must
	// be the one a start that held it committed, not a snapshot's from
	// before the wait.
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		// Not the database's or role's lock_timeout and statement_timeout:
		// a start waits for another's migration as long as it takes (ctx
		// bounds it), and a migration is not cut by a guard of seconds,
		// which would fail every start the same way.
		if _, err := tx.Exec(ctx, `SELECT pg_catalog.set_config('lock_timeout', '0', true), pg_catalog.set_config('statement_timeout', '0', true)`); err != nil {
			return fmt.Errorf("set lock_timeout and statement_timeout: %w", err)
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, catalogLockKey); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `SELECT pg_catalog.set_config('lock_timeout', $1, true)`,
			strconv.FormatInt(lockTimeout.Milliseconds(), 10)); err != nil {
			return fmt.Errorf("set lock_timeout: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			CREATE SCHEMA IF NOT EXISTS tenancy;
			CREATE TABLE IF NOT EXISTS tenancy.schema_migrations (
				version    integer PRIMARY KEY,
				name       text NOT NULL,
				applied_at timestamptz NOT NULL DEFAULT now()
			)`); err != nil {
			return fmt.Errorf("create tenancy.schema_migrations: %w", err)
		}
		var done bool
		if err := tx.QueryRow(ctx,
			`SELECT EXISTS (SELECT 1 FROM tenancy.schema_migrations WHERE version = $1)`,
			m.version).Scan(&done); err != nil {
			return fmt.Errorf("read version: %w", err)
		}
		if done {
			return nil
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx,
			`INSERT INTO tenancy.schema_migrations (version, name) VALUES ($1, $2)`,
			m.version, m.name); err != nil {
			return fmt.Errorf("record version: %w", err)
		}
		applied = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("apply catalog migration %s: %w", m.name, err)
	}
	return applied, nil
}
