package tenancy_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// frozenAfterSwitch is a catalog whose switch is saved but not published,
// and whose server stops answering (freeze) right after that first save,
// as a paused VM or a stalled disk does.
type frozenAfterSwitch struct {
	storage.Catalog
	once   *sync.Once
	freeze func()
}

func (c frozenAfterSwitch) SetPlacement(ctx context.Context, id, from, to string, generation int64) (tenantctx.Tenant, error) {
	t, err := c.Catalog.SetPlacement(ctx, id, from, to, generation)
	if err != nil {
		return t, err
	}
	c.once.Do(c.freeze)
	return t, fmt.Errorf("%w: injected", storage.ErrInvalidationFailed)
}

// TestMoveNotPropagatedEndsWhileTheCatalogIsFrozen: a move whose switch
// was saved but not published tries to publish it again for the drain
// timeout (at most 30 s); a catalog that stops answering then (frozen, not
// refusing) must not keep the move past that bound with the tenant's
// tables locked on its old database (writes there waited for ever): by
// then the move releases them, keeping the old schema, and its queue stays
// paused. Its closing entry and the pause, by which the workers'
// stale-move check keeps the queue paused, wait for the catalog; once it
// answers again the move ends saying its switch was not propagated.
func TestMoveNotPropagatedEndsWhileTheCatalogIsFrozen(t *testing.T) {
	t.Parallel()
	b, cat, secondPool, thirdPool := setupFrozenCatalog(t)
	acme := b.provision(t, "acme", "second")
	thaw, frozen := func() {}, make(chan struct{})
	catalog := frozenAfterSwitch{Catalog: b.catalog, once: new(sync.Once), freeze: func() { thaw = cat.Freeze(t); close(frozen) }}
	moving := tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: b.enq, Documents: b.docs, SchemaPool: b.pool,
		Pools: b.pools, Dispatcher: b.d, Plans: fair.DefaultPlans()})
	const drain = 2 * time.Second // the propagation's bound
	done := make(chan error, 1)
	go func() {
		_, err := moving.Move(context.WithoutCancel(b.ctx), acme.ID, "third", "test",
			tenancy.MoveOptions{Grace: time.Millisecond, DrainTimeout: drain, Poll: 10 * time.Millisecond})
		done <- err
	}()
	err := frozenMoveOutcome(t, b, acme, secondPool, frozen, drain+15*time.Second, &thaw, done)
	if err == nil || !strings.Contains(err.Error(), "queue stays paused") || !strings.Contains(err.Error(), "not propagated") {
		t.Fatalf("Move with the catalog frozen after the switch: %v, want not propagated, the queue staying paused", err)
	}
	if !exists(t, b.ctx, secondPool, acme.Schema) || !exists(t, b.ctx, thirdPool, acme.Schema) {
		t.Error("a schema was dropped although the switch was not propagated")
	}
}

// frozenMoveOutcome waits for frozen (the catalog frozen during a move),
// then writes to tenant's old schema on old, which must go through within
// bound of the freeze (the move released the source's tables) while the
// tenant's queue stays held; then it thaws the catalog (*thaw) and returns
// the move's outcome (done).
func frozenMoveOutcome(t *testing.T, b *twoServers, tenant tenantctx.Tenant, old *pgxpool.Pool, frozen <-chan struct{}, bound time.Duration,
	thaw *func(), done <-chan error) error {
	t.Helper()
	select {
	case <-frozen:
	case err := <-done:
		t.Fatalf("the move ended before the catalog was frozen: %v", err)
	}
	defer func() { (*thaw)() }()
	start := time.Now()
	wctx, cancel := context.WithTimeout(b.ctx, bound)
	defer cancel()
	_, err := old.Exec(wctx, "UPDATE "+pgx.Identifier{tenant.Schema, "invoices"}.Sanitize()+" SET status = status")
	if err != nil {
		t.Errorf("a write to the old schema %v after the catalog froze: %v; want the move to have released its tables by its bound", time.Since(start).Round(100*time.Millisecond), err)
	} else {
		t.Logf("the old schema took a write %v after the catalog froze", time.Since(start).Round(100*time.Millisecond))
	}
	stats, err := b.d.Stats(b.ctx, tenant.ID, b.enq.Layout().Queues()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stats {
		if !st.Moving && !st.Paused {
			t.Errorf("queue %s runs while the move's switch is not settled: %+v", st.Queue, st)
		}
	}
	(*thaw)()
	select {
	case err := <-done:
		t.Logf("the move ended once the catalog answered: %v", err)
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("the move did not end within 60 s of the catalog's thaw")
	}
	return nil
}

// setupFrozenCatalog is setupServers with the catalog ("main") on a server
// of its own, which a test may freeze, and "second" and "third" on another.
func setupFrozenCatalog(t *testing.T) (b *twoServers, cat *testenv.PostgresServer, second, third *pgxpool.Pool) {
	t.Helper()
	ctx := t.Context()
	cat = testenv.StartPostgres(t)
	pool, catalog, docs := catalogAt(t, cat.CreateDatabase(t), 4)
	server := testenv.StartPostgres(t)
	b = servicesOn(t, pool, catalog, docs, map[string]string{"second": server.CreateDatabase(t), "third": server.CreateDatabase(t)}, 4)
	var err error
	if second, err = b.pools.Pool(ctx, "second"); err != nil {
		t.Fatal(err)
	}
	if third, err = b.pools.Pool(ctx, "third"); err != nil {
		t.Fatal(err)
	}
	return b, cat, second, third
}

// TestMoveEndsWhileTheCatalogIsFrozenAtTheSwitch: a catalog that stops
// answering (frozen) as the move switches the tenant does not keep the
// tenant's tables locked for ever (the switch's statement waited without
// a bound): as documented for a catalog that does not answer, by twice
// the drain timeout (the switch, then asking again) the move releases the
// source's tables, keeps both schemas and its queue paused, and once the
// catalog answers it ends saying the outcome is unknown.
func TestMoveEndsWhileTheCatalogIsFrozenAtTheSwitch(t *testing.T) {
	t.Parallel()
	b, cat, secondPool, thirdPool := setupFrozenCatalog(t)
	acme := b.provision(t, "acme", "second")
	thaw, frozen := func() {}, make(chan struct{})
	const drain = 2 * time.Second
	opts := tenancy.WithBeforeSwitch(tenancy.MoveOptions{Grace: time.Millisecond, DrainTimeout: drain, Poll: 10 * time.Millisecond},
		func(context.Context) error { thaw = cat.Freeze(t); close(frozen); return nil })
	done := make(chan error, 1)
	go func() {
		_, err := b.svc.Move(context.WithoutCancel(b.ctx), acme.ID, "third", "test", opts)
		done <- err
	}()
	err := frozenMoveOutcome(t, b, acme, secondPool, frozen, 2*drain+15*time.Second, &thaw, done)
	if err == nil || !strings.Contains(err.Error(), "unknown") || !strings.Contains(err.Error(), "queue stays paused") {
		t.Fatalf("Move with the catalog frozen at the switch: %v, want the outcome unknown, the queue staying paused", err)
	}
	if !exists(t, b.ctx, secondPool, acme.Schema) || !exists(t, b.ctx, thirdPool, acme.Schema) {
		t.Error("a schema was dropped although the switch's outcome is unknown")
	}
}
