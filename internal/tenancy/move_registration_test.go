package tenancy_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
)

// reregistration is the set-up of a database registered again under its
// name: the catalog and its main pool, two more PostgreSQL databases
// (urlA, urlB), this process's pool registry and the operator's (`enqueue
// db remove`, `db add` run by another process).
type reregistration struct {
	pool            *pgxpool.Pool
	catalog         *storage.Postgres
	docs            *storage.FS
	urlA, urlB      string
	pools, operator *placement.Registry
}

func newReregistration(t *testing.T) reregistration {
	t.Helper()
	var r reregistration
	r.pool, r.catalog, r.docs = catalogOn(t)
	r.urlA, r.urlB = testenv.Postgres(t), testenv.Postgres(t)
	r.pools = placement.New(placement.Options{MainPool: r.pool, Catalog: r.catalog, MaxConns: 4, RefreshInterval: -1})
	r.operator = placement.New(placement.Options{MainPool: r.pool, Catalog: r.catalog, MaxConns: 1, RefreshInterval: -1})
	t.Cleanup(func() { _ = r.pools.Close(); _ = r.operator.Close() })
	return r
}

// direct is a pool of its own on url, to look at a database directly.
func (reregistration) direct(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	p, err := schema.NewPool(t.Context(), url, schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestMoveRefusedWhenTargetRegisteredAgain: a target database removed and
// registered again under its name (on another database) by another
// process while a move copies a tenant to it is caught at the switch: the
// move fails with ErrMoveRefused wrapping storage.ErrRegistrationChanged,
// the tenant stays where it was with its rows and its queue running, the
// copy on the old registration's database is dropped and nothing is
// created on the new one. Then a move onto the new registration succeeds.
func TestMoveRefusedWhenTargetRegisteredAgain(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rr := newReregistration(t)
	pool, catalog, docs, urlA, urlB, pools, operator := rr.pool, rr.catalog, rr.docs, rr.urlA, rr.urlB, rr.pools, rr.operator
	onA, onB := rr.direct(t, urlA), rr.direct(t, urlB)
	first, err := operator.Add(ctx, "eu2", urlA)
	if err != nil {
		t.Fatal(err)
	}
	d, enq, inspector := fairOn(t, catalog)
	svc := tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: enq, Documents: docs, SchemaPool: pool,
		Pools: pools, Dispatcher: d, Plans: fair.DefaultPlans()})
	b := &twoServers{
		fairBundle: &fairBundle{bundle: &bundle{ctx: ctx, catalog: catalog, docs: docs, inspector: inspector, pool: pool, svc: svc}, d: d, enq: enq},
		pools:      pools, second: onA,
	}
	acme := b.provision(t, "acme", "main")

	var again storage.Database
	opts := tenancy.WithBeforeSwitch(tenancy.MoveOptions{Grace: time.Millisecond, Poll: 10 * time.Millisecond}, func(ctx context.Context) error {
		if !exists(t, ctx, onA, acme.Schema) {
			t.Error("no copy on eu2's first registration before the switch")
		}
		if err := operator.Remove(ctx, "eu2"); err != nil {
			return err
		}
		var err error
		again, err = operator.Add(ctx, "eu2", urlB)
		return err
	})
	_, err = b.svc.Move(ctx, acme.ID, "eu2", "test", opts)
	if !errors.Is(err, tenancy.ErrMoveRefused) || !errors.Is(err, storage.ErrRegistrationChanged) {
		t.Fatalf("Move onto a database registered again during the copy: %v; want ErrMoveRefused wrapping ErrRegistrationChanged", err)
	}
	t.Logf("the refused move: %v", err)
	if again.Generation <= first.Generation {
		t.Fatalf("eu2 registered again with generation %d, first %d", again.Generation, first.Generation)
	}
	if tn, err := b.catalog.TenantByID(ctx, acme.ID); err != nil || tn.Database != "main" {
		t.Fatalf("placement after the refused move: %+v, %v; want main", tn, err)
	}
	if got := b.numbers(t, acme.ID); !slices.Equal(got, []string{"acme-1", "acme-2"}) {
		t.Errorf("acme sees %v after the refused move", got)
	}
	if exists(t, ctx, onA, acme.Schema) {
		t.Error("the copy on eu2's old registration was not dropped")
	}
	if exists(t, ctx, onB, acme.Schema) {
		t.Error("a schema appeared on eu2's new registration")
	}
	if q := inDefault(t, b.queue(t, acme.ID)); q.Paused {
		t.Error("queue still paused after the refused move")
	}
	if got := actions(b.audit(t, acme.ID)); !slices.Contains(got, string(tenancy.ActionMoveFailed)) || slices.Contains(got, string(tenancy.ActionMoved)) {
		t.Errorf("audit actions %v, want a move_failed and no moved", got)
	}

	// Moved again, the tenant goes to the new registration.
	m, err := b.svc.Move(ctx, acme.ID, "eu2", "test", tenancy.MoveOptions{Grace: time.Millisecond, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if m.Tenant.Database != "eu2" || m.Tenant.DatabaseGeneration != again.Generation {
		t.Errorf("moved tenant %+v, want on eu2 generation %d", m.Tenant, again.Generation)
	}
	if !exists(t, ctx, onB, acme.Schema) || exists(t, ctx, onA, acme.Schema) {
		t.Error("after the second move the schema is not on eu2's new registration only")
	}
	if got := b.numbers(t, acme.ID); !slices.Equal(got, []string{"acme-1", "acme-2"}) {
		t.Errorf("acme sees %v after the move", got)
	}
}
