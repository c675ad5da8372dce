package placement_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tenantctx"
)

// countingCatalog counts the reads of its database list.
type countingCatalog struct {
	*memstore.Catalog
	reads atomic.Int64
}

func (c *countingCatalog) Databases(ctx context.Context) ([]storage.Database, error) {
	c.reads.Add(1)
	return c.Catalog.Databases(ctx)
}

// TestRegistryResolvesFromTheListReadLastWhileTheGateHolds: while the load
// gate on ctx (storage.WithLoadGate: the worker's breaker of "main")
// holds reads of the catalog, a database of the catalog's list as the
// registry last read it (by resolve, or by Refresh) resolves from that
// list without a read, and one not on it fails with the gate's error (not
// ErrUnknownDatabase: its pool is not retired). Once the gate lets reads
// through, a database removed or registered again meanwhile is noticed.
// Before, every resolve read the catalog, the gate notwithstanding.
func TestRegistryResolvesFromTheListReadLastWhileTheGateHolds(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := testenv.Postgres(t) // the pools connect lazily: never dialed here
	catalog := &countingCatalog{Catalog: memstore.New()}
	for _, name := range []string{"a", "b"} {
		if _, err := catalog.AddDatabase(ctx, name, url); err != nil {
			t.Fatal(err)
		}
	}
	r := placement.New(placement.Options{MainPool: catalogPool(t), Catalog: catalog, MaxConns: 1, RefreshInterval: -1})
	t.Cleanup(func() { _ = r.Close() })

	gated, holding, errHeld := heldGate(ctx)
	_, genA, err := r.SchemaPoolRegistration(gated, "a") // reads the list: a, b
	if err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.AddDatabase(ctx, "c", url); err != nil { // after that read
		t.Fatal(err)
	}

	holding.Store(true)
	reads := catalog.reads.Load()
	if _, err := r.Pool(gated, "b"); err != nil {
		t.Errorf("pool of b (listed when last read) while the gate holds: %v; want it", err)
	}
	if _, err := r.Pool(gated, "c"); !errors.Is(err, errHeld) || errors.Is(err, placement.ErrUnknownDatabase) {
		t.Errorf("pool of c (registered after the last read) while the gate holds: %v; want the gate's error", err)
	}
	if d := catalog.reads.Load() - reads; d != 0 {
		t.Errorf("the catalog's list read %d times while the gate holds; want 0", d)
	}

	// Meanwhile b is removed and a registered again (other processes).
	if err := catalog.RemoveDatabase(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := catalog.RemoveDatabase(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.AddDatabase(ctx, "a", url); err != nil {
		t.Fatal(err)
	}
	if _, g, err := r.SchemaPoolRegistration(gated, "a"); err != nil || g != genA {
		t.Errorf("a while the gate holds: generation %d, %v; want the one listed, %d", g, err, genA)
	}

	holding.Store(false)
	if _, err := r.Pool(gated, "b"); !errors.Is(err, placement.ErrUnknownDatabase) {
		t.Errorf("pool of b, removed, once the gate lets reads through: %v; want ErrUnknownDatabase", err)
	}
	if _, g, err := r.SchemaPoolRegistration(gated, "a"); err != nil || g <= genA {
		t.Errorf("a registered again, once the gate lets reads through: generation %d, %v; want one above %d", g, err, genA)
	}
	if _, err := r.Pool(gated, "c"); err != nil {
		t.Errorf("pool of c once the gate lets reads through: %v", err)
	}
	// The list read last is the catalog's now: b is gone from it.
	holding.Store(true)
	if _, err := r.Pool(gated, "b"); !errors.Is(err, errHeld) {
		t.Errorf("pool of b, removed, while the gate holds again: %v; want the gate's error", err)
	}
	if _, err := r.Pool(gated, "c"); err != nil {
		t.Errorf("pool of c, listed by the last read, while the gate holds again: %v", err)
	}
}

// TestRegistryHoldsATenantOfARegistrationNewerThanTheListReadLast: while
// the load gate holds reads of the catalog, a tenant that carries a
// registration of its database newer than the one the list read last
// names (the database removed and registered again since, on another
// server, and the tenant placed there: its cached entry says so) is held
// with the gate's error, whether a pool of the older registration is open
// or not: the list read last does not know the new registration's URL.
// Before, it was served from the older registration's pool (or one opened
// from the older URL), that is, from the server the database no longer
// names.
func TestRegistryHoldsATenantOfARegistrationNewerThanTheListReadLast(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := testenv.Postgres(t)      // the pools connect lazily: never dialed here
	other := url + "&search_path=x" // another registration's URL
	if !strings.Contains(url, "?") {
		other = url + "?search_path=x"
	}
	catalog := memstore.New()
	gens := map[string]int64{}
	for _, name := range []string{"open", "closed"} {
		d, err := catalog.AddDatabase(ctx, name, url)
		if err != nil {
			t.Fatal(err)
		}
		gens[name] = d.Generation
	}
	r := placement.New(placement.Options{MainPool: catalogPool(t), Catalog: catalog, MaxConns: 1, RefreshInterval: -1})
	t.Cleanup(func() { _ = r.Close() })

	gated, holding, errHeld := heldGate(ctx)
	// Reads the list (open, closed) and opens open's pool, not closed's.
	if _, err := r.ForTenant(gated, tenantctx.Tenant{ID: "t_old", Schema: "tenant_old", Database: "open", DatabaseGeneration: gens["open"]}); err != nil {
		t.Fatal(err)
	}
	// Both registered again on another server; a tenant placed on each.
	newer := map[string]int64{}
	for _, name := range []string{"open", "closed"} {
		if err := catalog.RemoveDatabase(ctx, name); err != nil {
			t.Fatal(err)
		}
		d, err := catalog.AddDatabase(ctx, name, other)
		if err != nil {
			t.Fatal(err)
		}
		if d.Generation <= gens[name] {
			t.Fatalf("%s registered again: generation %d, want above %d", name, d.Generation, gens[name])
		}
		newer[name] = d.Generation
	}

	holding.Store(true)
	for _, name := range []string{"open", "closed"} {
		tn := tenantctx.Tenant{ID: "t_" + name, Schema: "tenant_" + name, Database: name, DatabaseGeneration: newer[name]}
		p, err := r.ForTenant(gated, tn)
		if !errors.Is(err, errHeld) {
			got := ""
			if p != nil {
				got = p.Config().ConnString()
			}
			t.Errorf("tenant on %s (registration %d; the list read last has %d) while the gate holds: pool %q, %v; want the gate's error",
				name, newer[name], gens[name], got, err)
		}
	}
	// A tenant of the registration listed is still served from the list.
	if _, err := r.ForTenant(gated, tenantctx.Tenant{ID: "t_old2", Schema: "tenant_old2", Database: "closed", DatabaseGeneration: gens["closed"]}); err != nil {
		t.Errorf("tenant on closed's registration listed, while the gate holds: %v; want its pool", err)
	}

	holding.Store(false)
	for _, name := range []string{"open", "closed"} {
		tn := tenantctx.Tenant{ID: "t_" + name, Schema: "tenant_" + name, Database: name, DatabaseGeneration: newer[name]}
		if p, err := r.ForTenant(gated, tn); err != nil || p.Config().ConnString() != other {
			t.Errorf("tenant on %s once the gate lets reads through: %v; want a pool of the new registration", name, err)
		}
	}
}

// heldGate returns ctx with a load gate (storage.WithLoadGate) that holds
// reads of the catalog with errHeld while holding is set, as the worker's
// breaker of "main" does while it is open.
func heldGate(ctx context.Context) (gated context.Context, holding *atomic.Bool, errHeld error) {
	holding, errHeld = new(atomic.Bool), errors.New("main held down")
	gated = storage.WithLoadGate(ctx, func(context.Context) error {
		if holding.Load() {
			return errHeld
		}
		return nil
	})
	return gated, holding, errHeld
}
