package storage_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/storage/storagetest"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestMain is the storage package's only TestMain: testenv.Main stops the
// PostgreSQL and Redis servers the tests started.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// testContext returns a context that ends with the test or after a minute.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newTestPool opens a pool on the database at url with an empty
// search_path, as the application does: an unqualified table name fails.
func newTestPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatalf("parse database url: %v", err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = ""
	pool, err := pgxpool.NewWithConfig(testContext(t), cfg)
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// postgresBundle is a catalog on a fresh database and its pool.
type postgresBundle struct {
	pool    *pgxpool.Pool
	catalog *storage.Postgres
}

// setupPostgres returns a migrated catalog on a fresh database.
func setupPostgres(t *testing.T) postgresBundle {
	t.Helper()
	pool := newTestPool(t, testenv.Postgres(t))
	if err := storage.MigrateCatalog(testContext(t), pool, nil); err != nil {
		t.Fatalf("MigrateCatalog: %v", err)
	}
	return postgresBundle{pool: pool, catalog: storage.NewPostgres(pool)}
}

func TestPostgresConformance(t *testing.T) {
	t.Parallel()
	storagetest.TestCatalog(t, func(t *testing.T) storage.Catalog {
		return setupPostgres(t).catalog
	})
}

func TestPostgresPoolHasEmptySearchPath(t *testing.T) {
	t.Parallel()
	b := setupPostgres(t)
	ctx := testContext(t)
	var n int
	err := b.pool.QueryRow(ctx, `SELECT count(*) FROM tenants`).Scan(&n)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("unqualified query on the test pool: %v, want relation does not exist", err)
	}
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM tenancy.tenants`).Scan(&n); err != nil {
		t.Fatalf("qualified query: %v", err)
	}
}

func TestPostgresStoresNoPlaintextKey(t *testing.T) {
	t.Parallel()
	b := setupPostgres(t)
	ctx := testContext(t)
	tn, err := tenantctx.New("keyholder", "Key Holder", "pro")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.catalog.CreateTenant(ctx, tn); err != nil {
		t.Fatalf("CreateTenant: %v", err)
	}
	key, err := b.catalog.CreateAPIKey(ctx, tn.ID)
	if err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}
	secret := strings.TrimPrefix(key, storage.APIKeyPrefix)

	// Every row of every catalog table, as text.
	rows, err := b.pool.Query(ctx, `
		SELECT k::text FROM tenancy.api_keys k
		UNION ALL SELECT t::text FROM tenancy.tenants t
		UNION ALL SELECT a::text FROM tenancy.audit_log a`)
	if err != nil {
		t.Fatalf("scan catalog: %v", err)
	}
	defer rows.Close()
	var sawHash bool
	for rows.Next() {
		var row string
		if err := rows.Scan(&row); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(row, secret) {
			t.Errorf("catalog row holds the plaintext key: %s", row)
		}
		sawHash = sawHash || strings.Contains(row, storage.HashAPIKey(key))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !sawHash {
		t.Errorf("no row holds the key's hash %s", storage.HashAPIKey(key))
	}
}

func TestMigrateCatalogConcurrentStart(t *testing.T) {
	t.Parallel()
	url := testenv.Postgres(t)
	ctx := testContext(t)
	const starters = 4
	pools := make([]*pgxpool.Pool, starters)
	for i := range pools {
		pools[i] = newTestPool(t, url) // one pool per "process"
	}
	errs := make([]error, starters)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, pool := range pools {
		wg.Go(func() {
			<-start
			errs[i] = storage.MigrateCatalog(ctx, pool, nil)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("MigrateCatalog #%d: %v", i, err)
		}
	}

	// A later start is a no-op.
	if err := storage.MigrateCatalog(ctx, pools[0], nil); err != nil {
		t.Fatalf("MigrateCatalog on a migrated catalog: %v", err)
	}
	var rows, maxVersion int
	if err := pools[0].QueryRow(ctx,
		`SELECT count(*), coalesce(max(version), 0) FROM tenancy.schema_migrations`).Scan(&rows, &maxVersion); err != nil {
		t.Fatalf("read tenancy.schema_migrations: %v", err)
	}
	if maxVersion != storage.CatalogVersion() || rows != storage.CatalogMigrations() {
		t.Errorf("tenancy.schema_migrations: %d rows, version %d; want %d rows up to version %d",
			rows, maxVersion, storage.CatalogMigrations(), storage.CatalogVersion())
	}
}

func TestMigrateCatalogCancelled(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t, testenv.Postgres(t))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := storage.MigrateCatalog(ctx, pool, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("MigrateCatalog(cancelled) error = %v, want context.Canceled", err)
	}
}

func TestPostgresSchemaConstraints(t *testing.T) {
	t.Parallel()
	b := setupPostgres(t)
	ctx := testContext(t)
	_, err := b.pool.Exec(ctx, `
		INSERT INTO tenancy.tenants (id, slug, status, schema_name)
		VALUES ('x1', 'xone', 'deleted', 'tenant_xone')`)
	if err == nil || !strings.Contains(err.Error(), "tenants_status_check") {
		t.Errorf("insert with status 'deleted': %v, want tenants_status_check violation", err)
	}

	var indexes []string
	rows, err := b.pool.Query(ctx,
		`SELECT indexdef FROM pg_catalog.pg_indexes WHERE schemaname = 'tenancy' ORDER BY indexname`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var def string
		if err := rows.Scan(&def); err != nil {
			t.Fatal(err)
		}
		indexes = append(indexes, def)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	all := strings.Join(indexes, "\n")
	for _, want := range []string{
		"ON tenancy.tenants USING btree (status, id)",
		"ON tenancy.audit_log USING btree (tenant_id, at)",
		"ON tenancy.api_keys USING btree (key_hash)",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no index %q among:\n%s", want, all)
		}
	}
}

func TestPostgresSetStatusSerialized(t *testing.T) {
	t.Parallel()
	b := setupPostgres(t)
	ctx := testContext(t)
	// From provisioning, "active then deleting" is allowed and "deleting
	// then active" is not: with the row locked the tenant always ends up
	// deleting. A lost update would leave it active.
	for i := range 20 {
		tn, err := tenantctx.New("race-"+string(rune('a'+i)), "Race", "free")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.catalog.CreateTenant(ctx, tn); err != nil {
			t.Fatalf("CreateTenant: %v", err)
		}
		var wg sync.WaitGroup
		var errActive, errDeleting error
		wg.Go(func() { _, errActive = b.catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive) })
		wg.Go(func() { _, errDeleting = b.catalog.SetStatus(ctx, tn.ID, tenantctx.StatusDeleting) })
		wg.Wait()
		if errDeleting != nil {
			t.Errorf("SetStatus(deleting): %v", errDeleting)
		}
		if errActive != nil && !errors.Is(errActive, storage.ErrInvalidTransition) {
			t.Errorf("SetStatus(active): %v, want nil or ErrInvalidTransition", errActive)
		}
		got, err := b.catalog.TenantByID(ctx, tn.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != tenantctx.StatusDeleting {
			t.Errorf("tenant %s ends %s, want deleting", tn.Slug, got.Status)
		}
	}
}

func TestPostgresQueriesCountsLookups(t *testing.T) {
	t.Parallel()
	b := setupPostgres(t)
	ctx := testContext(t)
	tn, err := tenantctx.New("counted", "Counted", "free")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.catalog.CreateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	key, err := b.catalog.CreateAPIKey(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	before := b.catalog.Queries()
	_, _ = b.catalog.TenantByID(ctx, tn.ID)
	_, _ = b.catalog.TenantBySlug(ctx, "unknown-slug")
	_, _ = b.catalog.TenantForAPIKey(ctx, key)
	if got := b.catalog.Queries() - before; got != 3 {
		t.Errorf("3 look-ups counted %d queries, want 3", got)
	}
	before = b.catalog.Queries()
	_, _ = b.catalog.TenantByID(ctx, "../x")
	_, _ = b.catalog.TenantBySlug(ctx, strings.Repeat("a", 10<<10))
	_, _ = b.catalog.TenantForAPIKey(ctx, "not-a-key")
	if got := b.catalog.Queries() - before; got != 0 {
		t.Errorf("3 malformed look-ups counted %d queries, want 0 (refused before SQL)", got)
	}
}

// TestMigrateCatalogWarnsOfForeignMigrations: an older binary starting on
// a catalog a newer release migrated, or one whose recorded migration has
// another name, starts and says so.
func TestMigrateCatalogWarnsOfForeignMigrations(t *testing.T) {
	t.Parallel()
	b := setupPostgres(t)
	ctx := testContext(t)
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	if err := storage.MigrateCatalog(ctx, b.pool, logger); err != nil {
		t.Fatal(err)
	}
	if logs.Len() != 0 {
		t.Errorf("a catalog this release migrated logged:\n%s", logs.String())
	}
	if _, err := b.pool.Exec(ctx, `
		INSERT INTO tenancy.schema_migrations (version, name) VALUES (9998, '9998_later.sql'), (9999, '9999_latest.sql');
		UPDATE tenancy.schema_migrations SET name = '0002_renamed.sql' WHERE version = 2`); err != nil {
		t.Fatal(err)
	}
	if err := storage.MigrateCatalog(ctx, b.pool, logger); err != nil {
		t.Fatalf("MigrateCatalog on a newer catalog: %v", err)
	}
	for _, want := range []string{
		`"msg":"the catalog has migrations this release does not know: a newer release migrated it","versions":[9998,9999]`,
		`"msg":"catalog migration recorded under another name: this release's migration of that version is not applied","version":2,"recorded":"0002_renamed.sql","this_release":"0002_tenant_limits.sql"`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
}

// TestRemoveDatabaseRacingAPlacement: a database being removed while a
// tenant is placed there (its row inserted, not yet committed) is not
// removed: the removal waits for the placement, then answers ErrConflict.
func TestRemoveDatabaseRacingAPlacement(t *testing.T) {
	t.Parallel()
	b := setupPostgres(t)
	ctx := testContext(t)
	if _, err := b.catalog.AddDatabase(ctx, "eu-3", ""); err != nil {
		t.Fatal(err)
	}
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `INSERT INTO tenancy.tenants (id, slug, status, schema_name, database)
		VALUES ('tn_racer', 'racer', 'active', 'tenant_racer', 'eu-3')`); err != nil {
		t.Fatal(err)
	}
	removed := make(chan error, 1)
	go func() { removed <- b.catalog.RemoveDatabase(ctx, "eu-3") }()
	testenv.WaitFor(t, 30*time.Second, "the removal to wait for the placement", func() bool {
		n, err := testenv.LockWaiters(ctx, b.pool, "") // its own database's: the server is shared
		return err == nil && n > 0
	})
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-removed; !errors.Is(err, storage.ErrInUse) {
		t.Errorf("RemoveDatabase racing a placement = %v, want ErrInUse", err)
	}
	ds, err := b.catalog.Databases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || ds[0].Name != "eu-3" || ds[0].Tenants != 1 {
		t.Errorf("databases %+v, want eu-3 kept with its tenant", ds)
	}
}

// TestWithdrawTenantWaitsForACreationInFlight: a provisioning whose
// INSERT's answer was lost withdraws the tenant while PostgreSQL may still
// run that INSERT (the caller's deadline cut it, the server had it). The
// withdrawal must wait for it and delete what it committed: a delete that
// found nothing and returned left the row, committed just after, holding
// the slug in provisioning for good.
func TestWithdrawTenantWaitsForACreationInFlight(t *testing.T) {
	t.Parallel()
	b := setupPostgres(t)
	ctx := testContext(t)
	tn, err := tenantctx.New("inflight", "In Flight", "pro")
	if err != nil {
		t.Fatal(err)
	}
	tn.Status = tenantctx.StatusProvisioning
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := storage.CreateTenantIn(ctx, tx, tn); err != nil {
		t.Fatalf("the creation in flight: %v", err)
	}
	withdrawn := make(chan error, 1)
	go func() { withdrawn <- b.catalog.WithdrawTenant(ctx, tn.ID) }()
	testenv.WaitFor(t, 30*time.Second, "the withdrawal to wait for the creation in flight", func() bool {
		n, err := testenv.LockWaiters(ctx, b.pool, "") // its own database's: the server is shared
		return err == nil && n > 0
	})
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-withdrawn; err != nil {
		t.Errorf("WithdrawTenant while its creation was in flight: %v, want it deleted", err)
	}
	if got, err := b.catalog.TenantBySlug(ctx, tn.Slug); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("after the withdrawal the catalog holds %s in status %s (err %v), want nothing", got.ID, got.Status, err)
	}
}
