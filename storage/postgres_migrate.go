package storage

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
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
func MigrateCatalog(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) error {
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
		done, err := applyMigration(ctx, pool, m)
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

// applyMigration applies m in one transaction unless it is recorded
// already (checked again under the lock: another process may have applied
// it since appliedVersions), and reports whether it did. The advisory lock
// is taken before the schema and version table are created, so concurrent
// starts never race on CREATE ... IF NOT EXISTS.
func applyMigration(ctx context.Context, pool *pgxpool.Pool, m catalogMigration) (bool, error) {
	applied := false
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, catalogLockKey); err != nil {
			return fmt.Errorf("lock: %w", err)
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
