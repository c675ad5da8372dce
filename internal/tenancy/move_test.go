package tenancy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// twoServers is a Service over two PostgreSQL servers: the catalog and
// "main" on the shared one, "second" on a server of its own.
type twoServers struct {
	*fairBundle
	pools  *placement.Registry
	second *pgxpool.Pool // a direct pool on "second", for checks
}

func setupTwoServers(t *testing.T) *twoServers {
	t.Helper()
	return setupServers(t, false)
}

// setupServers is setupTwoServers, with a third database ("third", on the
// second server) when third is set.
func setupServers(t *testing.T, third bool) *twoServers {
	t.Helper()
	ctx := t.Context()
	pool, catalog, docs := catalogOn(t)
	server := testenv.StartPostgres(t)
	secondURL := server.CreateDatabase(t)
	second, err := schema.NewPool(ctx, secondURL, schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Close)
	urls := map[string]string{"second": secondURL}
	if third {
		urls["third"] = server.CreateDatabase(t)
	}
	b := servicesOn(t, pool, catalog, docs, urls, 4)
	b.second = second
	return b
}

// servicesOn registers the databases of urls beside pool's "main" (pools
// of conns connections) and returns the service of a fair-dispatching
// stack on them, with catalog and docs.
func servicesOn(t *testing.T, pool *pgxpool.Pool, catalog *storage.Postgres, docs *storage.FS, urls map[string]string, conns int32) *twoServers {
	t.Helper()
	pools := placement.New(placement.Options{MainPool: pool, URLs: urls, Catalog: catalog, MaxConns: conns})
	t.Cleanup(func() { _ = pools.Close() })
	if err := pools.Register(t.Context()); err != nil {
		t.Fatal(err)
	}
	return servicesWith(t, pool, catalog, docs, pools)
}

// servicesWith is servicesOn with pools, a registry over pool's "main"
// whose databases are registered already.
func servicesWith(t *testing.T, pool *pgxpool.Pool, catalog *storage.Postgres, docs *storage.FS, pools *placement.Registry) *twoServers {
	t.Helper()
	ctx := t.Context()
	d, enq, inspector := fairOn(t, catalog)
	svc := tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: enq, Documents: docs, SchemaPool: pool,
		Pools: pools, Dispatcher: d, Plans: fair.DefaultPlans()})
	return &twoServers{
		fairBundle: &fairBundle{bundle: &bundle{ctx: ctx, catalog: catalog, docs: docs, inspector: inspector, pool: pool, svc: svc}, d: d, enq: enq},
		pools:      pools,
	}
}

// provision creates an active tenant on database db ("" lets placement
// choose) with invoices 1 and 2 from its identity sequence (and their
// customers and lines).
func (b *twoServers) provision(t *testing.T, slug, db string) tenantctx.Tenant {
	t.Helper()
	p, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: slug, Database: db}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Migrate(b.ctx, p.Tenant, 0, tenancy.ActorWorker); err != nil {
		t.Fatal(err)
	}
	tn, err := b.catalog.TenantByID(b.ctx, p.Tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	b.inTenant(t, tn, func(ctx context.Context, tx pgx.Tx) error {
		_, err := invoice.Create(ctx, tx,
			invoice.New{Number: slug + "-1", Status: "sent", Currency: "EUR", Customer: invoice.Customer{Name: "Müller GmbH " + slug, Email: "a@" + slug + ".example"},
				Lines: []invoice.Line{{Description: "Łódź " + slug, Quantity: decimal.RequireFromString("2"), UnitPrice: decimal.RequireFromString("10.50")}}},
			invoice.New{Number: slug + "-2", Customer: invoice.Customer{Name: "Ada " + slug, Email: "ada@" + slug + ".example"}})
		return err
	})
	return tn
}

func (b *twoServers) inTenant(t *testing.T, tn tenantctx.Tenant, fn func(context.Context, pgx.Tx) error) {
	t.Helper()
	pool, err := b.pools.ForTenant(b.ctx, tn)
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.InTenant(tenantctx.WithTenant(b.ctx, tn), pool, fn); err != nil {
		t.Fatal(err)
	}
}

// numbers returns the tenant's invoice numbers, by id, read where the
// catalog places it now.
func (b *twoServers) numbers(t *testing.T, id string) []string {
	t.Helper()
	tn, err := b.catalog.TenantByID(b.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	b.inTenant(t, tn, func(ctx context.Context, tx pgx.Tx) error {
		for _, n := range []int64{1, 2} {
			inv, err := invoice.Load(ctx, tx, n)
			if err != nil {
				return err
			}
			out = append(out, inv.Number)
		}
		return nil
	})
	return out
}

func exists(t *testing.T, ctx context.Context, pool *pgxpool.Pool, name string) bool {
	t.Helper()
	ok, err := schema.Exists(ctx, pool, name)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// writeWaitingForTheCopy starts a write of a customer into acme's tables
// in b's "main" database, made as the application makes it (straight to
// its tables), and returns once that write waits for the lock a move's
// copy holds on them. The write's outcome arrives on the channel: ctx
// bounds the wait, not the write.
func writeWaitingForTheCopy(t *testing.T, ctx context.Context, b *twoServers) <-chan error {
	t.Helper()
	wrote := make(chan error, 1)
	go func() {
		_, err := b.pool.Exec(context.WithoutCancel(ctx), `INSERT INTO tenant_acme.customers (name, email) VALUES ('late', 'late@acme.example')`)
		wrote <- err
	}()
	testenv.WaitFor(t, 30*time.Second, "the write to wait for the copy's lock", func() bool {
		n, err := testenv.LockWaiters(ctx, b.pool, "INSERT INTO tenant_acme.customers", "relation")
		return err == nil && n > 0
	})
	return wrote
}

// terminateCopySource terminates the backend of the copy's source
// transaction, the one holding the tenant's customers table against
// writes in b's "main" database.
func terminateCopySource(t *testing.T, ctx context.Context, b *twoServers) {
	t.Helper()
	var terminated int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(l.pid))
		FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation
		WHERE l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
		  AND c.relname = 'customers' AND l.mode = 'ExclusiveLock' AND l.granted`).Scan(&terminated); err != nil {
		t.Fatal(err)
	}
	if terminated != 1 {
		t.Fatalf("terminated %d backends holding the copy's lock, want 1", terminated)
	}
}

func actions(entries []storage.AuditEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Action)
	}
	return out
}

// TestPlacementAcrossServers: new tenants go to the least-loaded database
// or the one asked for, each schema is created on its own server, and the
// same invoice ids on both servers stay each tenant's own.
func TestPlacementAcrossServers(t *testing.T) {
	t.Parallel()
	b := setupTwoServers(t)
	acme := b.provision(t, "acme", "main")
	globex := b.provision(t, "globex", "") // main has 1 tenant, second 0
	if acme.Database != "main" || globex.Database != "second" {
		t.Fatalf("placements acme %q, globex %q; want main, second", acme.Database, globex.Database)
	}
	if !exists(t, b.ctx, b.pool, acme.Schema) || exists(t, b.ctx, b.pool, globex.Schema) ||
		!exists(t, b.ctx, b.second, globex.Schema) || exists(t, b.ctx, b.second, acme.Schema) {
		t.Fatal("schemas are not where their tenants are placed")
	}
	if got := b.numbers(t, acme.ID); !slices.Equal(got, []string{"acme-1", "acme-2"}) {
		t.Errorf("acme sees %v", got)
	}
	if got := b.numbers(t, globex.ID); !slices.Equal(got, []string{"globex-1", "globex-2"}) {
		t.Errorf("globex sees %v", got)
	}
	if _, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "nowhere", Database: "third"}, "test"); !errors.Is(err, placement.ErrUnknownDatabase) {
		t.Errorf("Provision on an unregistered database: %v, want ErrUnknownDatabase", err)
	}
	// A tenant on a database without a registry pool fails closed.
	if _, err := placement.PoolFor(b.ctx, nil, b.pool, globex); !errors.Is(err, placement.ErrUnknownDatabase) {
		t.Errorf("PoolFor(no registry, tenant on second) = %v, want ErrUnknownDatabase", err)
	}
	// Destroy drops the schema where it lives.
	if _, err := b.svc.RequestDeletion(b.ctx, globex.ID, "test"); err != nil {
		t.Fatal(err)
	}
	gone, err := b.catalog.TenantByID(b.ctx, globex.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Destroy(b.ctx, gone, "test"); err != nil {
		t.Fatal(err)
	}
	if exists(t, b.ctx, b.second, globex.Schema) {
		t.Error("Destroy left the schema on the second server")
	}
}

// TestMoveTenant: a move copies every row to the other server, verifies
// it, switches the placement, drops the old schema and resumes the queue;
// sequences go on where they were.
func TestMoveTenant(t *testing.T) {
	t.Parallel()
	b := setupTwoServers(t)
	acme := b.provision(t, "acme", "main")
	b.pdfs(t, acme, 3) // a backlog that waits through the move
	before, err := schema.Checksums(b.ctx, b.pool, acme.Schema)
	if err != nil {
		t.Fatal(err)
	}
	m, err := b.svc.Move(b.ctx, acme.ID, "second", "test", tenancy.MoveOptions{Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if m.From != "main" || m.To != "second" || !m.OldSchemaDropped || m.Rows == 0 {
		t.Errorf("Move = %+v", m)
	}
	after, err := schema.Checksums(b.ctx, b.second, acme.Schema)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(before, after) {
		t.Errorf("checksums after the move %v, before %v", after, before)
	}
	if exists(t, b.ctx, b.pool, acme.Schema) {
		t.Error("the old schema is still on main")
	}
	moved, err := b.catalog.TenantByID(b.ctx, acme.ID)
	if err != nil || moved.Database != "second" {
		t.Fatalf("placement after the move: %+v, %v", moved, err)
	}
	if got := b.numbers(t, acme.ID); !slices.Equal(got, []string{"acme-1", "acme-2"}) {
		t.Errorf("acme sees %v after the move", got)
	}
	// The identity sequence continues: a new invoice gets id 3.
	b.inTenant(t, moved, func(ctx context.Context, tx pgx.Tx) error {
		ids, err := invoice.Create(ctx, tx, invoice.New{Number: "acme-3", Customer: invoice.Customer{Name: "New", Email: "n@acme.example"}})
		if err == nil && ids[0] != 3 {
			t.Errorf("next invoice id after the move = %d, want 3", ids[0])
		}
		return err
	})
	q := inDefault(t, b.queue(t, acme.ID))
	if q.Paused || q.Waiting+q.Admitted != 3 {
		t.Errorf("queue after the move: %+v; want resumed with its 3 tasks", q)
	}
	got := actions(b.audit(t, acme.ID))
	if !slices.Contains(got, string(tenancy.ActionMoveStarted)) || !slices.Contains(got, string(tenancy.ActionMoved)) ||
		slices.Contains(got, string(tenancy.ActionMoveFailed)) {
		t.Errorf("audit actions %v", got)
	}
	if _, err := b.svc.Move(b.ctx, acme.ID, "second", "test", tenancy.MoveOptions{}); !errors.Is(err, tenancy.ErrMoveRefused) {
		t.Errorf("a move to the same database: %v, want ErrMoveRefused", err)
	}
}

// TestMoveFailureLeavesTenantWhereItWas: a failure after the copy (before
// the switch) and a target that holds the schema already both leave the
// tenant on its database with its data and its queue running; the
// partial copy is dropped, a schema the move did not create is not.
func TestMoveFailureLeavesTenantWhereItWas(t *testing.T) {
	t.Parallel()
	b := setupTwoServers(t)
	acme := b.provision(t, "acme", "main")
	opts := tenancy.WithBeforeSwitch(tenancy.MoveOptions{Grace: time.Millisecond}, func(ctx context.Context) error {
		if !exists(t, ctx, b.second, acme.Schema) {
			t.Error("no copy on the target before the switch")
		}
		return errors.New("injected failure")
	})
	if _, err := b.svc.Move(b.ctx, acme.ID, "second", "test", opts); err == nil {
		t.Fatal("Move with a failure before the switch succeeded")
	}
	if exists(t, b.ctx, b.second, acme.Schema) {
		t.Error("the partial copy is still on the target")
	}
	if tn, err := b.catalog.TenantByID(b.ctx, acme.ID); err != nil || tn.Database != "main" {
		t.Errorf("placement after a failed move: %+v, %v", tn, err)
	}
	if got := b.numbers(t, acme.ID); !slices.Equal(got, []string{"acme-1", "acme-2"}) {
		t.Errorf("acme sees %v after a failed move", got)
	}
	if q := inDefault(t, b.queue(t, acme.ID)); q.Paused {
		t.Error("queue still paused after a failed move")
	}
	if got := actions(b.audit(t, acme.ID)); !slices.Contains(got, string(tenancy.ActionMoveFailed)) {
		t.Errorf("audit actions %v, want a move_failed", got)
	}

	// A leftover schema of the same name on the target: refused, kept.
	if _, err := b.second.Exec(b.ctx, `CREATE SCHEMA tenant_acme; CREATE TABLE tenant_acme.keep (x int)`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Move(b.ctx, acme.ID, "second", "test", tenancy.MoveOptions{Grace: time.Millisecond}); !errors.Is(err, schema.ErrSchemaExists) {
		t.Fatalf("Move onto an existing schema: %v, want ErrSchemaExists", err)
	}
	var n int
	if err := b.second.QueryRow(b.ctx, `SELECT count(*) FROM tenant_acme.keep`).Scan(&n); err != nil {
		t.Errorf("the target's own schema was touched: %v", err)
	}
	if got := b.numbers(t, acme.ID); !slices.Equal(got, []string{"acme-1", "acme-2"}) {
		t.Errorf("acme sees %v after a refused move", got)
	}
	if _, err := b.svc.Move(b.ctx, acme.ID, "third", "test", tenancy.MoveOptions{}); !errors.Is(err, placement.ErrUnknownDatabase) {
		t.Errorf("a move to an unregistered database: %v, want ErrUnknownDatabase", err)
	}
}

// TestConcurrentMovesOneWins: a second move of a tenant started while the
// first holds its copy is refused at once (the first holds the tenant's
// move lock), having created nothing and without lifting the first's
// hold. The tenant is where the first put it, with its rows, and its
// queue is resumed.
func TestConcurrentMovesOneWins(t *testing.T) {
	t.Parallel()
	b := setupServers(t, true)
	acme := b.provision(t, "acme", "main")
	fast := tenancy.MoveOptions{Grace: time.Millisecond, Poll: 10 * time.Millisecond}
	second := make(chan error, 1)
	opts := tenancy.WithBeforeSwitch(fast, func(ctx context.Context) error {
		_, err := b.svc.Move(context.WithoutCancel(ctx), acme.ID, "third", "test", fast)
		second <- err
		return nil
	})
	first, err := b.svc.Move(b.ctx, acme.ID, "second", "test", opts)
	if err != nil || first.To != "second" || !first.OldSchemaDropped {
		t.Fatalf("the first move: %+v, %v", first, err)
	}
	if err := <-second; !errors.Is(err, tenancy.ErrMoveRefused) || !strings.Contains(err.Error(), "another move") {
		t.Fatalf("the second move, started while the first ran: %v, want ErrMoveRefused (another move)", err)
	}
	if tn, err := b.catalog.TenantByID(b.ctx, acme.ID); err != nil || tn.Database != "second" {
		t.Fatalf("placement: %+v, %v; want second", tn, err)
	}
	third, err := b.pools.SchemaPool(b.ctx, "third")
	if err != nil {
		t.Fatal(err)
	}
	if exists(t, b.ctx, third, acme.Schema) {
		t.Error("the losing move left a copy on third")
	}
	if exists(t, b.ctx, b.pool, acme.Schema) {
		t.Error("the old schema on main was not dropped")
	}
	if got := b.numbers(t, acme.ID); !slices.Equal(got, []string{"acme-1", "acme-2"}) {
		t.Errorf("acme sees %v after the moves", got)
	}
	if q := inDefault(t, b.queue(t, acme.ID)); q.Paused {
		t.Error("queue still paused after the moves")
	}
}

// TestMoveWriteDuringCopyIsNotLost: a write to the tenant's tables that
// the application makes while a move copies them waits, and fails once
// the old schema is dropped: it is never committed where nobody reads it.
func TestMoveWriteDuringCopyIsNotLost(t *testing.T) {
	t.Parallel()
	b := setupTwoServers(t)
	acme := b.provision(t, "acme", "main")
	var wrote <-chan error
	opts := tenancy.WithBeforeSwitch(tenancy.MoveOptions{Grace: time.Millisecond}, func(ctx context.Context) error {
		wrote = writeWaitingForTheCopy(t, ctx, b)
		return nil
	})
	if _, err := b.svc.Move(b.ctx, acme.ID, "second", "test", opts); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err == nil {
		t.Fatal("a write made during the copy was committed into the old schema, which is gone")
	}
	var n int
	if err := b.second.QueryRow(b.ctx, `SELECT count(*) FROM tenant_acme.customers WHERE name = 'late'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("late rows on the new database: %d, %v", n, err)
	}
	if got := b.numbers(t, acme.ID); !slices.Equal(got, []string{"acme-1", "acme-2"}) {
		t.Errorf("acme sees %v after the move", got)
	}
}

// unpropagatedPlacement is a catalog whose placement changes are saved but
// whose cache invalidation is never published.
type unpropagatedPlacement struct{ storage.Catalog }

func (c unpropagatedPlacement) SetPlacement(ctx context.Context, id, from, to string, generation int64) (tenantctx.Tenant, error) {
	t, err := c.Catalog.SetPlacement(ctx, id, from, to, generation)
	if err != nil {
		return t, err
	}
	return t, fmt.Errorf("%w: injected", storage.ErrInvalidationFailed)
}

// TestMoveNotPropagatedKeepsQueuePausedAndOldSchema: a move whose switch
// cannot be published to the other processes' caches says so, and keeps
// the tenant's queue paused and its old schema, since other processes may
// still run its tasks against the old database.
func TestMoveNotPropagatedKeepsQueuePausedAndOldSchema(t *testing.T) {
	t.Parallel()
	b := setupTwoServers(t)
	acme := b.provision(t, "acme", "main")
	svc := tenancy.New(tenancy.Config{Catalog: unpropagatedPlacement{b.catalog}, Enqueuer: b.enq, Documents: b.docs,
		SchemaPool: b.pool, Pools: b.pools, Dispatcher: b.d, Plans: fair.DefaultPlans()})
	_, err := svc.Move(b.ctx, acme.ID, "second", "test", tenancy.MoveOptions{Grace: time.Millisecond, DrainTimeout: 300 * time.Millisecond, Poll: 10 * time.Millisecond})
	if !errors.Is(err, storage.ErrInvalidationFailed) || !strings.Contains(err.Error(), "queue stays paused") {
		t.Fatalf("Move without propagation: %v, want ErrInvalidationFailed saying the queue stays paused", err)
	}
	if tn, err := b.catalog.TenantByID(b.ctx, acme.ID); err != nil || tn.Database != "second" {
		t.Fatalf("placement: %+v, %v; want the switch saved", tn, err)
	}
	if !exists(t, b.ctx, b.pool, acme.Schema) {
		t.Error("the old schema was dropped although other processes may still use it")
	}
	if q := inDefault(t, b.queue(t, acme.ID)); !q.Paused {
		t.Error("the queue was resumed although other processes may still reach the old database")
	}
	// The audit log closes the move: the tenant lives on "second" now.
	var actions []string
	var detail map[string]any
	for _, e := range b.audit(t, acme.ID) {
		if strings.HasPrefix(e.Action, "tenant.move") {
			actions = append(actions, e.Action)
			if e.Action == string(tenancy.ActionMoved) {
				if err := json.Unmarshal(e.Detail, &detail); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if !slices.Equal(actions, []string{string(tenancy.ActionMoveStarted), string(tenancy.ActionMoved)}) ||
		detail["to"] != "second" || detail["propagated"] != false || detail["old_schema_dropped"] != false {
		t.Errorf("move audit entries %v, tenant.moved detail %v; want started then moved, not propagated, old schema kept", actions, detail)
	}
}

// TestInterruptedMoveHoldIsReleasedByTheNextMove: a move whose process
// died (kill -9, a second Ctrl-C) leaves its hold on the tenant's queue,
// which no resume lifts. The next move of the tenant, even one refused
// because the tenant is there already, finds no move holding the lock
// and releases that hold; while a move holds the lock, the hold stays.
func TestInterruptedMoveHoldIsReleasedByTheNextMove(t *testing.T) {
	t.Parallel()
	b := setupTwoServers(t)
	acme := b.provision(t, "acme", "main")
	if _, err := b.d.Hold(b.ctx, acme.ID, fair.Moving, b.enq.Layout().Queues()...); err != nil {
		t.Fatal(err)
	}
	if q := inDefault(t, b.queue(t, acme.ID)); !q.Moving || !q.Paused {
		t.Fatalf("set-up: the queue after the move's hold: %+v", q)
	}
	// A move holds the lock (another session, as another process would).
	conn, err := b.pool.Acquire(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var locked bool
	if err := conn.QueryRow(b.ctx, "SELECT pg_try_advisory_lock($1::int4, hashtext($2))", 0x6d6f7665, acme.ID).Scan(&locked); err != nil || !locked {
		t.Fatalf("take the move lock: %v, %v", locked, err)
	}
	if _, err := b.svc.Move(b.ctx, acme.ID, "second", "test", tenancy.MoveOptions{}); !errors.Is(err, tenancy.ErrMoveRefused) {
		t.Fatalf("a move while another runs: %v, want ErrMoveRefused", err)
	}
	if q := inDefault(t, b.queue(t, acme.ID)); !q.Moving {
		t.Fatal("a refused move lifted the hold of the move that runs")
	}
	// That process dies: its session ends, and the lock with it.
	if err := conn.Conn().Close(b.ctx); err != nil {
		t.Fatal(err)
	}
	conn.Release()
	var steps []string
	_, err = b.svc.Move(b.ctx, acme.ID, "main", "test", tenancy.MoveOptions{Progress: func(s string) { steps = append(steps, s) }})
	if !errors.Is(err, tenancy.ErrMoveRefused) {
		t.Fatalf("a move to where the tenant is: %v, want ErrMoveRefused", err)
	}
	if q := inDefault(t, b.queue(t, acme.ID)); q.Moving || q.Paused {
		t.Errorf("the interrupted move's hold after the next move: %+v, want released", q)
	}
	if len(steps) != 1 || !strings.Contains(steps[0], "interrupted move") {
		t.Errorf("progress %q, want the release of the interrupted move's hold", steps)
	}
}
