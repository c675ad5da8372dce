package placement_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// waitDeadline bounds each wait for a pool to be closed.
const waitDeadline = time.Minute

// reregisterEnv is a catalog on the shared server, two more PostgreSQL
// servers with a database each, and two registries on the catalog: the
// operator's (`enqueue db add/remove`) and a long-running process's, which
// reads tenants through the Redis-backed cache as the binaries do.
type reregisterEnv struct {
	main     *pgxpool.Pool
	catalog  *storage.Postgres
	cache    *storage.Cache
	rdb      *redis.Client // the cache's Redis
	operator *placement.Registry
	process  *placement.Registry
	urlA     string // a database on server A
	urlB     string // a database on server B
}

func newReregisterEnv(t *testing.T) *reregisterEnv {
	t.Helper()
	main := catalogPool(t)
	e := &reregisterEnv{
		main:    main,
		catalog: storage.NewPostgres(main),
		urlA:    testenv.StartPostgres(t).CreateDatabase(t),
		urlB:    testenv.StartPostgres(t).CreateDatabase(t),
	}
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	e.rdb = rdb
	e.cache = storage.NewCache(e.catalog, rdb, storage.CacheOptions{})
	t.Cleanup(func() { _ = e.cache.Close() })
	// No refresh loop: the tests call Refresh where they mean it.
	e.operator = placement.New(placement.Options{MainPool: main, Catalog: e.catalog, MaxConns: 2, RefreshInterval: -1})
	e.process = placement.New(placement.Options{MainPool: main, Catalog: e.cache, MaxConns: 2, RefreshInterval: -1})
	t.Cleanup(func() { _ = e.operator.Close(); _ = e.process.Close() })
	return e
}

// placeTenant creates an active tenant on database db and returns it as the
// long-running process reads it (through the cache).
func (e *reregisterEnv) placeTenant(t *testing.T, slug, db string) tenantctx.Tenant {
	t.Helper()
	ctx := t.Context()
	tn, err := tenantctx.New(slug, slug, "free")
	if err != nil {
		t.Fatal(err)
	}
	tn.Status, tn.Database = tenantctx.StatusActive, db
	if _, err := e.cache.CreateTenant(ctx, tn); err != nil {
		t.Fatalf("CreateTenant(%s on %s): %v", slug, db, err)
	}
	got, err := e.cache.TenantByID(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// leave moves the tenant back to main, so that its database can be
// removed.
func (e *reregisterEnv) leave(t *testing.T, tn tenantctx.Tenant) {
	t.Helper()
	if _, err := e.cache.SetPlacement(t.Context(), tn.ID, tn.DatabaseName(), tenantctx.DefaultDatabase, 0); err != nil {
		t.Fatalf("SetPlacement(%s to main): %v", tn.Slug, err)
	}
}

// server names the server and database a pool reaches.
func server(t *testing.T, p *pgxpool.Pool) string {
	t.Helper()
	var port int
	var db string
	if err := p.QueryRow(t.Context(), "SELECT inet_server_port(), current_database()").Scan(&port, &db); err != nil {
		t.Fatalf("query through the pool: %v", err)
	}
	return fmt.Sprintf("%s@%d", db, port)
}

// serverOf names the server and database of url.
func serverOf(t *testing.T, url string) string {
	t.Helper()
	p, err := pgxpool.New(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	return server(t, p)
}

// otherBackends counts the sessions on url's database other than the one
// asking (on a connection of its own); -1 when it cannot ask.
func otherBackends(t *testing.T, url string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return -1
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
		return -1
	}
	return n
}

// waitClosed waits until p refuses to hand out a connection (closed).
func waitClosed(t *testing.T, p *pgxpool.Pool, what string) {
	t.Helper()
	testenv.WaitFor(t, waitDeadline, what, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		c, err := p.Acquire(ctx)
		if err == nil {
			c.Release()
		}
		return err != nil && ctx.Err() == nil
	})
}

// TestRegistryDatabaseRegisteredAgain: a database removed and registered
// again under the same name, on another server, by another process (the
// operator's CLI) is reached on the new server by a running process as
// soon as it runs a tenant placed there: its tenants carry the new
// registration. The old pool is closed once the unit of work still using
// it has given its connection back.
func TestRegistryDatabaseRegisteredAgain(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newReregisterEnv(t)
	onA, onB := serverOf(t, e.urlA), serverOf(t, e.urlB)

	if _, err := e.operator.Add(ctx, "eu2", e.urlA); err != nil {
		t.Fatal(err)
	}
	first := e.placeTenant(t, "first", "eu2")
	oldPool, err := e.process.ForTenant(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if got := server(t, oldPool); got != onA {
		t.Fatalf("tenant on eu2 reached %s, want %s", got, onA)
	}
	// A unit of work is still running on the old pool when the database
	// is replaced.
	busy, err := oldPool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if busy != nil {
			busy.Release()
		}
	}()

	e.leave(t, first)
	if err := e.operator.Remove(ctx, "eu2"); err != nil {
		t.Fatalf("Remove(eu2): %v", err)
	}
	if _, err := e.operator.Add(ctx, "eu2", e.urlB); err != nil {
		t.Fatalf("Add(eu2) again: %v", err)
	}
	second := e.placeTenant(t, "second", "eu2")
	newPool, err := e.process.ForTenant(ctx, second)
	if err != nil {
		t.Fatal(err)
	}
	if got := server(t, newPool); got != onB {
		t.Fatalf("tenant placed on eu2 after it was registered again reached %s, want %s (the new registration)", got, onB)
	}
	if p, err := e.process.Pool(ctx, "eu2"); err != nil || server(t, p) != onB {
		t.Errorf("Pool(eu2) = %v, want a pool on %s", err, onB)
	}
	if p, err := e.process.SchemaForTenant(ctx, second); err != nil || server(t, p) != onB {
		t.Errorf("SchemaForTenant(tenant on eu2) = %v, want a pool on %s", err, onB)
	}
	if got := e.process.Open(); len(got) != 2 || got[1] != "eu2" {
		t.Errorf("open pools: %v, want main and eu2", got)
	}

	// The unit of work on the old pool finishes; then that pool closes.
	var one int
	if err := busy.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Errorf("a unit of work on the old pool failed when the database was registered again: %v", err)
	}
	busy.Release()
	busy = nil
	waitClosed(t, oldPool, "the old registration's pool to close")
	testenv.WaitFor(t, waitDeadline, "the old server to have no connection from the process left", func() bool {
		return otherBackends(t, e.urlA) == 0
	})
	if got := server(t, newPool); got != onB {
		t.Errorf("after the old pool closed, the new one reaches %s, want %s", got, onB)
	}
}

// TestRegistryRefreshClosesPoolsOfRemovedDatabases: Refresh closes the
// pool of a database another process removed, and of one removed and
// registered again (the next use opens the new registration's); pools of
// TENANT_DATABASES are kept; the name of a removed database fails closed.
func TestRegistryRefreshClosesPoolsOfRemovedDatabases(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newReregisterEnv(t)
	onA, onB := serverOf(t, e.urlA), serverOf(t, e.urlB)

	if _, err := e.operator.Add(ctx, "eu2", e.urlA); err != nil {
		t.Fatal(err)
	}
	if _, err := e.operator.Add(ctx, "eu3", e.urlB); err != nil {
		t.Fatal(err)
	}
	eu2, err := e.process.Pool(ctx, "eu2")
	if err != nil {
		t.Fatal(err)
	}
	eu3, err := e.process.Pool(ctx, "eu3")
	if err != nil {
		t.Fatal(err)
	}
	if server(t, eu2) != onA || server(t, eu3) != onB {
		t.Fatalf("eu2 reaches %s, eu3 %s; want %s and %s", server(t, eu2), server(t, eu3), onA, onB)
	}
	if err := e.process.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.process.Open(); len(got) != 3 {
		t.Fatalf("open pools after a refresh with nothing changed: %v, want main, eu2, eu3", got)
	}

	// eu2 is removed and registered again on server B; eu3 is removed.
	if err := e.operator.Remove(ctx, "eu2"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.operator.Add(ctx, "eu2", e.urlB); err != nil {
		t.Fatal(err)
	}
	if err := e.operator.Remove(ctx, "eu3"); err != nil {
		t.Fatal(err)
	}
	if err := e.process.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.process.Open(); len(got) != 1 {
		t.Errorf("open pools after the refresh: %v, want main only", got)
	}
	waitClosed(t, eu2, "the pool of eu2's old registration to close")
	waitClosed(t, eu3, "the pool of removed eu3 to close")
	tn := e.placeTenant(t, "again", "eu2")
	p, err := e.process.ForTenant(ctx, tn)
	if err != nil {
		t.Fatal(err)
	}
	if got := server(t, p); got != onB {
		t.Errorf("eu2 after the refresh reaches %s, want %s", got, onB)
	}
	if _, err := e.process.Pool(ctx, "eu3"); !errors.Is(err, placement.ErrUnknownDatabase) {
		t.Errorf("Pool(removed eu3) = %v, want ErrUnknownDatabase", err)
	}

	// A database of TENANT_DATABASES keeps its pool whatever the catalog
	// says: its URL is the configuration's.
	configured := placement.New(placement.Options{MainPool: e.main, Catalog: e.catalog,
		URLs: map[string]string{"eu4": e.urlA}, MaxConns: 2, RefreshInterval: -1})
	defer configured.Close()
	if err := configured.Register(ctx); err != nil {
		t.Fatal(err)
	}
	eu4, err := configured.Pool(ctx, "eu4")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.operator.Remove(ctx, "eu4"); err != nil {
		t.Fatalf("Remove(eu4) by a process without it configured: %v", err)
	}
	if err := configured.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := server(t, eu4); got != onA {
		t.Errorf("the configured database's pool reaches %s after a refresh, want %s", got, onA)
	}
}

// TestRegistryTenantCachedByThePreviousRelease: a tenant that a process of
// the previous release cached in Redis carries no registration number of
// its database. A running process that reads it must still reach the
// current registration of its database, not the pool it holds open for
// an older one: the cache reads such an entry from the catalog again.
func TestRegistryTenantCachedByThePreviousRelease(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newReregisterEnv(t)
	onA, onB := serverOf(t, e.urlA), serverOf(t, e.urlB)

	if _, err := e.operator.Add(ctx, "eu2", e.urlA); err != nil {
		t.Fatal(err)
	}
	first := e.placeTenant(t, "first", "eu2")
	oldPool, err := e.process.ForTenant(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if got := server(t, oldPool); got != onA {
		t.Fatalf("tenant on eu2 reached %s, want %s", got, onA)
	}
	e.leave(t, first)
	if err := e.operator.Remove(ctx, "eu2"); err != nil {
		t.Fatalf("Remove(eu2): %v", err)
	}
	if _, err := e.operator.Add(ctx, "eu2", e.urlB); err != nil {
		t.Fatalf("Add(eu2) again: %v", err)
	}

	// A tenant placed on the new eu2, which a process of the previous
	// release read and cached: its entry in Redis has no
	// database_generation.
	tn, err := tenantctx.New("cached", "cached", "free")
	if err != nil {
		t.Fatal(err)
	}
	tn.Status, tn.Database = tenantctx.StatusActive, "eu2"
	if tn, err = e.catalog.CreateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	previous := map[string]any{"found": true, "tenant": map[string]any{
		"id": tn.ID, "slug": tn.Slug, "name": tn.Name, "status": tn.Status, "schema": tn.Schema,
		"plan": tn.Plan, "limits": tn.Limits, "database": tn.Database,
		"created_at": tn.CreatedAt, "updated_at": tn.UpdatedAt,
	}}
	raw, err := json.Marshal(previous)
	if err != nil {
		t.Fatal(err)
	}
	// The cache's Redis layout (storage/cache_redis.go) under its default
	// prefix: "id:" and "slug:" entries.
	for _, key := range []string{storage.DefaultCacheKeyPrefix + "id:" + tn.ID, storage.DefaultCacheKeyPrefix + "slug:" + tn.Slug} {
		if err := e.rdb.Set(ctx, key, raw, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
	}

	for _, read := range []struct {
		how string
		get func() (tenantctx.Tenant, error)
	}{
		{"by id", func() (tenantctx.Tenant, error) { return e.cache.TenantByID(ctx, tn.ID) }},
		{"by slug", func() (tenantctx.Tenant, error) { return e.cache.TenantBySlug(ctx, tn.Slug) }},
	} {
		got, err := read.get()
		if err != nil {
			t.Fatalf("read %s: %v", read.how, err)
		}
		p, err := e.process.ForTenant(ctx, got)
		if err != nil {
			t.Fatal(err)
		}
		if s := server(t, p); s != onB {
			t.Errorf("tenant cached by the previous release, read %s (database generation %d), reached %s through the process's open pool; want %s (eu2's current registration)",
				read.how, got.DatabaseGeneration, s, onB)
		}
	}
}
