package placement_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// gatedCatalog is an in-memory PlacementStore whose Databases can be made
// to read its snapshot and then wait (a slow catalog query).
type gatedCatalog struct {
	mu   sync.Mutex
	dbs  map[string]storage.Database
	gen  int64
	gate chan struct{} // when set, the next Databases call reads, signals read, then waits on it
	read chan struct{}
	// afterRemove runs once after the next RemoveDatabase has removed.
	afterRemove func()
}

func (c *gatedCatalog) AddDatabase(_ context.Context, name, url string) (storage.Database, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	d := storage.Database{Name: name, URL: url, Generation: c.gen}
	c.dbs[name] = d
	return d, nil
}

func (c *gatedCatalog) Databases(context.Context) ([]storage.Database, error) {
	c.mu.Lock()
	var out []storage.Database
	for _, d := range c.dbs {
		out = append(out, d)
	}
	gate, read := c.gate, c.read
	c.gate = nil
	c.mu.Unlock()
	if gate != nil {
		close(read)
		<-gate
	}
	return out, nil
}

func (c *gatedCatalog) RemoveDatabase(_ context.Context, name string) error {
	c.mu.Lock()
	delete(c.dbs, name)
	after := c.afterRemove
	c.afterRemove = nil
	c.mu.Unlock()
	if after != nil {
		after()
	}
	return nil
}

func (c *gatedCatalog) SetPlacement(context.Context, string, string, string, int64) (tenantctx.Tenant, error) {
	return tenantctx.Tenant{}, errors.New("not implemented")
}

// TestStaleLookupSparesANewerRegistration: a lookup that read the catalog
// while the name was removed must not close the pool another goroutine
// opened meanwhile for the name's new registration (e.g. a move's
// destination pool).
func TestStaleLookupSparesANewerRegistration(t *testing.T) {
	ctx := t.Context()
	main, err := schema.NewPool(ctx, testenv.Postgres(t), schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(main.Close)
	url := testenv.StartPostgres(t).CreateDatabase(t)
	cat := &gatedCatalog{dbs: map[string]storage.Database{}}
	r := placement.New(placement.Options{MainPool: main, Catalog: cat, MaxConns: 2, RefreshInterval: -1})
	t.Cleanup(func() { _ = r.Close() })

	// "x" is not registered (removed). A slow lookup reads that.
	cat.mu.Lock()
	cat.gate, cat.read = make(chan struct{}), make(chan struct{})
	gate, read := cat.gate, cat.read
	cat.mu.Unlock()
	errA := make(chan error, 1)
	go func() { _, err := r.Pool(ctx, "x"); errA <- err }()
	<-read

	// Meanwhile the operator registers "x" again and a move opens its pool.
	if _, err := cat.AddDatabase(ctx, "x", url); err != nil {
		t.Fatal(err)
	}
	p, gen, err := r.SchemaPoolRegistration(ctx, "x")
	if err != nil || gen == 0 {
		t.Fatalf("SchemaPoolRegistration(x) = %v, %d, %v", p, gen, err)
	}

	// The slow lookup finishes with "unknown database".
	close(gate)
	if err := <-errA; !errors.Is(err, placement.ErrUnknownDatabase) {
		t.Fatalf("slow Pool(x) = %v, want ErrUnknownDatabase", err)
	}

	// The move goes on with the pool of the current registration.
	if err := p.Ping(ctx); err != nil {
		t.Fatalf("pool of the current registration (generation %d) after a stale lookup: %v", gen, err)
	}
	if open := r.Open(); len(open) != 2 {
		t.Errorf("Open() = %v, want [main x]", open)
	}
}

// TestRemoveSparesANewerRegistration: Remove must close the pool of
// the registration it removed, not one of a registration of the same name
// added (by another process) and opened here right after the removal.
func TestRemoveSparesANewerRegistration(t *testing.T) {
	ctx := t.Context()
	main, err := schema.NewPool(ctx, testenv.Postgres(t), schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(main.Close)
	srv := testenv.StartPostgres(t)
	url1, url2 := srv.CreateDatabase(t), srv.CreateDatabase(t)
	cat := &gatedCatalog{dbs: map[string]storage.Database{}}
	r := placement.New(placement.Options{MainPool: main, Catalog: cat, MaxConns: 2, RefreshInterval: -1})
	t.Cleanup(func() { _ = r.Close() })
	if _, err := cat.AddDatabase(ctx, "x", url1); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Pool(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	var p2 interface{ Ping(context.Context) error }
	var gen2 int64
	cat.afterRemove = func() {
		// Another process registers x again; a move here opens its pool.
		if _, err := cat.AddDatabase(ctx, "x", url2); err != nil {
			t.Error(err)
			return
		}
		p, g, err := r.SchemaPoolRegistration(ctx, "x")
		if err != nil {
			t.Error(err)
			return
		}
		p2, gen2 = p, g
	}
	if err := r.Remove(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if p2 == nil {
		t.Fatal("no pool of the new registration")
	}
	if err := p2.Ping(ctx); err != nil {
		t.Fatalf("pool of the new registration (generation %d) after Remove of the old one: %v", gen2, err)
	}
}
