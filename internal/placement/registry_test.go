package placement_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

func TestMain(m *testing.M) { os.Exit(testenv.MainLeakCheck(m)) }

// catalogPool returns a hardened pool (4 connections) on the tests'
// shared PostgreSQL, holding a migrated catalog: a process's "main".
func catalogPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	main, err := schema.NewPool(t.Context(), testenv.Postgres(t), schema.PoolOptions{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(main.Close)
	if err := storage.MigrateCatalog(t.Context(), main, nil); err != nil {
		t.Fatal(err)
	}
	return main
}

// TestRegistryAcrossServers: "main" is the main pool; another database's
// pool is opened once, on first use, from TENANT_DATABASES or from the URL
// stored in the catalog, bounded by MaxConns and hardened like the main
// pool (empty search_path); unknown databases fail closed; Close closes
// what it opened.
func TestRegistryAcrossServers(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	main := catalogPool(t)
	srv := testenv.StartPostgres(t)
	envURL, storedURL := srv.CreateDatabase(t), srv.CreateDatabase(t)
	catalog := storage.NewPostgres(main)
	r := placement.New(placement.Options{MainPool: main, URLs: map[string]string{"second": envURL}, Catalog: catalog, MaxConns: 3})
	if err := r.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(ctx); err != nil {
		t.Fatalf("Register twice: %v", err)
	}
	if _, err := r.Add(ctx, "third", storedURL); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Add(ctx, "broken", "postgres://nobody@127.0.0.1:1/none?connect_timeout=2"); err == nil {
		t.Error("Add of an unreachable database succeeded")
	}
	if _, err := r.Add(ctx, "main", envURL); !errors.Is(err, storage.ErrConflict) {
		t.Errorf("Add(main) = %v, want ErrConflict", err)
	}

	if p, err := r.ForTenant(ctx, tenantctx.Tenant{ID: tenantctx.NewID()}); err != nil || p != main {
		t.Errorf("ForTenant(no placement) = %p, %v; want the main pool", p, err)
	}
	if got := r.Open(); len(got) != 1 {
		t.Errorf("pools open before any use: %v, want main only", got)
	}
	var wg sync.WaitGroup
	pools := make([]any, 8)
	for i := range pools {
		wg.Go(func() {
			p, err := r.ForTenant(ctx, tenantctx.Tenant{ID: tenantctx.NewID(), Database: "second"})
			if err != nil {
				t.Error(err)
			}
			pools[i] = p
		})
	}
	wg.Wait()
	for _, p := range pools[1:] {
		if p != pools[0] {
			t.Fatal("concurrent first uses opened more than one pool")
		}
	}
	second, _ := r.Pool(ctx, "second")
	if second == main || second.Config().MaxConns != 3 {
		t.Errorf("second pool: main %v, max conns %d; want its own pool of 3", second == main, second.Config().MaxConns)
	}
	var path, db string
	if err := second.QueryRow(ctx, "SELECT current_setting('search_path'), current_database()").Scan(&path, &db); err != nil {
		t.Fatal(err)
	}
	if (path != "" && path != `""`) || !strings.Contains(envURL, "/"+db) {
		t.Errorf("second pool: search_path %q on database %q; want empty, on %s", path, db, envURL)
	}
	third, err := r.Pool(ctx, "third")
	if err != nil {
		t.Fatalf("Pool(third, stored URL): %v", err)
	}
	if err := third.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || !strings.Contains(storedURL, "/"+db) {
		t.Errorf("third pool on %q (%v), want %s", db, err, storedURL)
	}
	if got := r.Open(); len(got) != 3 {
		t.Errorf("pools open: %v, want main, second, third", got)
	}
	for _, name := range []string{"nowhere", "Bad Name"} {
		tn := tenantctx.Tenant{ID: tenantctx.NewID(), Database: name}
		if _, err := r.ForTenant(ctx, tn); !errors.Is(err, placement.ErrUnknownDatabase) {
			t.Errorf("ForTenant(database %q) = %v, want ErrUnknownDatabase", name, err)
		}
	}

	// Least loaded: "broken" was never registered; second and third are
	// empty, main has a tenant.
	tn, _ := tenantctx.New("acme", "Acme", "free")
	if _, err := catalog.CreateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Choose(ctx, ""); err != nil || got != "second" {
		t.Errorf("Choose() = %q, %v; want second (empty, first by name)", got, err)
	}
	if got, err := r.Choose(ctx, "third"); err != nil || got != "third" {
		t.Errorf("Choose(third) = %q, %v", got, err)
	}
	if _, err := r.Choose(ctx, "nowhere"); !errors.Is(err, placement.ErrUnknownDatabase) {
		t.Errorf("Choose(nowhere) = %v, want ErrUnknownDatabase", err)
	}

	// Remove: a database configured in TENANT_DATABASES is refused (the
	// next start would register it again); a registered one without
	// tenants goes, and the pool opened for it is closed.
	if err := r.Remove(ctx, "second"); !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), "TENANT_DATABASES") {
		t.Errorf("Remove(second, configured) = %v, want ErrInUse naming TENANT_DATABASES", err)
	}
	if err := r.Remove(ctx, "third"); err != nil {
		t.Fatalf("Remove(third): %v", err)
	}
	if err := third.Ping(ctx); err == nil {
		t.Error("third pool still open after Remove")
	}
	if _, err := r.Pool(ctx, "third"); !errors.Is(err, placement.ErrUnknownDatabase) {
		t.Errorf("Pool(third) after Remove = %v, want ErrUnknownDatabase", err)
	}
	if got := r.Open(); len(got) != 2 {
		t.Errorf("pools open after Remove: %v, want main and second", got)
	}

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := second.Ping(context.Background()); err == nil {
		t.Error("second pool still open after Close")
	}
	if _, err := r.Pool(ctx, "second"); !errors.Is(err, placement.ErrClosed) {
		t.Errorf("Pool after Close = %v, want ErrClosed", err)
	}
	if err := main.Ping(ctx); err != nil {
		t.Errorf("Close closed the main pool: %v", err)
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	if got := placement.Redact("postgres://app:s3cret@db2:5432/inv"); strings.Contains(got, "s3cret") {
		t.Errorf("Redact kept the password: %s", got)
	}
	if got := placement.Redact("host=db2 password=s3cret"); strings.Contains(got, "s3cret") {
		t.Errorf("Redact kept the password of a DSN: %s", got)
	}
	// PostgreSQL URLs may carry the password as a query parameter
	// (libpq's and pgx's "password", and "sslpassword" of the client key).
	for _, u := range []string{
		"postgres://app@db2:5432/inv?sslmode=require&password=s3cret",
		"postgres://app@db2:5432/inv?PASSWORD=s3cret",
		"postgres://app@db2:5432/inv?pass%77ord=s3cret",
		"postgres://app@db2:5432/inv?sslpassword=s3cret&sslmode=verify-full",
		"postgres://app:x@db2:5432/inv?password=s3cret",
	} {
		got := placement.Redact(u)
		if strings.Contains(got, "s3cret") {
			t.Errorf("Redact(%q) = %q: the password in the query is kept", u, got)
		}
		if !strings.Contains(got, "db2:5432/inv") {
			t.Errorf("Redact(%q) = %q: the host and database are gone", u, got)
		}
	}
	// The user information ends where pgx (and libpq) end it, at the
	// first '@' before any '/': a password holding '?' or '#', which Go's
	// URL parser would take for a query or a fragment, is masked too.
	for _, u := range []string{
		"postgres://app:?s3cret@db2:5432/inv",
		"postgres://app:#s3cret@db2:5432/inv",
		"postgresql://app:2024?s3cret@db2:5432/inv?sslmode=require",
		"postgres://app:2024#s3cret@db2/inv",
		"postgres://app:a/s3cret@db2/inv",
	} {
		cfg, err := pgconn.ParseConfig(u)
		if err == nil && !strings.Contains(cfg.Password, "s3cret") {
			t.Fatalf("pgx reads the password of %q as %q: the case tests nothing", u, cfg.Password)
		}
		if got := placement.Redact(u); strings.Contains(got, "s3cret") {
			t.Errorf("Redact(%q) = %q: the password is kept", u, got)
		}
	}
	if got := placement.Redact("postgres://app@db2/inv?sslmode=require&application_name=w"); got != "postgres://app@db2/inv?sslmode=require&application_name=w" {
		t.Errorf("Redact changed a URL without a password: %q", got)
	}
}

// TestRegistryLanes: with MainLanes, tenants on "main" get their lane of
// it (the same lane while it has a free connection) and MainPool stays
// the pool for everything else; another database is opened as Lanes lanes
// sharing MaxConns, and its tenants get their lanes of it.
func TestRegistryLanes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := testenv.Postgres(t)
	main, err := schema.NewPool(ctx, url, schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(main.Close)
	lanes, err := schema.NewLanes(ctx, url, 4, schema.PoolOptions{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lanes.Close)
	second := testenv.StartPostgres(t).CreateDatabase(t)
	r := placement.New(placement.Options{MainPool: main, MainLanes: lanes, URLs: map[string]string{"second": second}, MaxConns: 6, Lanes: 3})
	defer r.Close()

	for i := range 20 {
		tn := tenantctx.Tenant{ID: tenantctx.NewID(), Schema: fmt.Sprintf("tenant_r%02d", i)}
		p, err := r.ForTenant(ctx, tn)
		if err != nil {
			t.Fatal(err)
		}
		if p != lanes.For(tn.Schema) || p == main {
			t.Fatalf("ForTenant(%s on main) is not its lane", tn.Schema)
		}
		if sp, _ := r.SchemaForTenant(ctx, tn); sp != main {
			t.Errorf("SchemaForTenant(%s on main) is not MainSchemaPool", tn.Schema)
		}
		tn.Database = "second"
		p2, err := r.ForTenant(ctx, tn)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := r.ForTenant(ctx, tn)
		if again != p2 {
			t.Errorf("ForTenant(%s on second): two lanes while idle", tn.Schema)
		}
		if p2.Config().MaxConns != 2 {
			t.Errorf("a lane of second has %d connections, want 6/3 = 2", p2.Config().MaxConns)
		}
		if sp, _ := r.SchemaForTenant(ctx, tn); sp != p2 {
			t.Errorf("SchemaForTenant(%s on second) is not its lane", tn.Schema)
		}
	}
	if p, _ := r.Pool(ctx, tenantctx.DefaultDatabase); p != main {
		t.Error("Pool(main) is not MainPool")
	}
	var db string
	p, err := r.Pool(ctx, "second")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || !strings.Contains(second, "/"+db) {
		t.Errorf("Pool(second) on %q (%v), want %s", db, err, second)
	}
}
