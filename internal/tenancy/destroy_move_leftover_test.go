package tenancy_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// schemaExists reports whether pool's database has schema name.
func schemaExists(t *testing.T, pool *pgxpool.Pool, name string) bool {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// TestDestroyErasesTheCopiesOfAKilledMove: a move killed (kill -9, a lost
// machine) leaves a complete copy of the tenant's schema, its customers
// included, in the database it did not end on: in the target when it
// died between its copy and the switch, in the source when it died
// between the switch and the old schema's drop. Nothing drops that copy
// (the next move refuses the target, the stale-move check only lifts the
// hold), so the tenant's destroy must: an erased tenant leaves no data in
// any database its moves touched. Another tenant's schema of the same name
// there (its slug reused) is left alone.
func TestDestroyErasesTheCopiesOfAKilledMove(t *testing.T) {
	t.Parallel()
	b := setupMoveLoss(t)
	main, err := b.pools.SchemaPool(b.ctx, tenantctx.DefaultDatabase)
	if err != nil {
		t.Fatal(err)
	}
	second, err := b.pools.SchemaPool(b.ctx, "second")
	if err != nil {
		t.Fatal(err)
	}
	// killedMove leaves tn as a move from "main" to "second" killed at
	// its step: its entry written, its copy committed, and (switched)
	// the catalog's placement switched.
	killedMove := func(t *testing.T, tn tenantctx.Tenant, switched bool) tenantctx.Tenant {
		t.Helper()
		if _, err := main.Exec(b.ctx, "INSERT INTO "+tn.Schema+".customers (name, email) VALUES ('Ada Lovelace', 'ada@example.com')"); err != nil {
			t.Fatal(err)
		}
		e := storage.AuditEntry{TenantID: tn.ID, Actor: "test", Action: string(tenancy.ActionMoveStarted),
			Detail: []byte(`{"from":"main","to":"second"}`)}
		if err := b.catalog.AppendAudit(b.ctx, e); err != nil {
			t.Fatal(err)
		}
		if _, err := schema.Copy(b.ctx, main, second, tn.Schema); err != nil {
			t.Fatal(err)
		}
		if switched {
			if _, err := b.catalog.SetPlacement(b.ctx, tn.ID, "main", "second", 0); err != nil {
				t.Fatal(err)
			}
		}
		cur, err := b.catalog.TenantByID(b.ctx, tn.ID)
		if err != nil {
			t.Fatal(err)
		}
		return cur
	}
	destroy := func(t *testing.T, tn tenantctx.Tenant) {
		t.Helper()
		if _, err := b.svc.RequestDeletion(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
			t.Fatal(err)
		}
		cur, err := b.catalog.TenantByID(b.ctx, tn.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.svc.Destroy(b.ctx, cur, tenancy.ActorWorker); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name     string
		switched bool
	}{{"before the switch", false}, {"after the switch", true}} {
		t.Run(tc.name, func(t *testing.T) {
			slug := "killedmove-before"
			if tc.switched {
				slug = "killedmove-after"
			}
			tn := killedMove(t, b.onMain(t, slug), tc.switched)
			destroy(t, tn)
			for name, pool := range map[string]*pgxpool.Pool{"main": main, "second": second} {
				if schemaExists(t, pool, tn.Schema) {
					t.Errorf("schema %s of the destroyed tenant (placed on %s) is still in database %s, its customers with it",
						tn.Schema, tn.DatabaseName(), name)
				}
			}
		})
	}

	// A schema of that name on the other database that another tenant
	// owns stays.
	t.Run("another tenant's schema", func(t *testing.T) {
		tn := b.onMain(t, "killedmove-reused")
		e := storage.AuditEntry{TenantID: tn.ID, Actor: "test", Action: string(tenancy.ActionMoveStarted),
			Detail: []byte(`{"from":"main","to":"second"}`)}
		if err := b.catalog.AppendAudit(b.ctx, e); err != nil {
			t.Fatal(err)
		}
		if _, err := second.Exec(b.ctx, "CREATE SCHEMA "+tn.Schema); err != nil {
			t.Fatal(err)
		}
		if _, err := second.Exec(b.ctx, "COMMENT ON SCHEMA "+tn.Schema+" IS 'tenantworker tenant tn_00000000000000000000000000'"); err != nil {
			t.Fatal(err)
		}
		destroy(t, tn)
		if !schemaExists(t, second, tn.Schema) {
			t.Errorf("schema %s of another tenant in database second was dropped by this tenant's destroy", tn.Schema)
		}
		if schemaExists(t, main, tn.Schema) {
			t.Errorf("schema %s of the destroyed tenant is still in database main", tn.Schema)
		}
	})
}

// TestDestroyFailsWhileAMovesDatabaseIsRegisteredWithoutItsURL: a
// database its move touched that the catalog still registers, but whose
// URL this process does not have (registered by TENANT_DATABASES of other
// processes, missing from this worker's), may hold a whole copy of the
// tenant. The destroy cannot reach it, so it fails (and is retried, as
// when the tenant's own database is out of reach) instead of completing
// the erasure with that copy left and warning that the database is no
// longer registered.
func TestDestroyFailsWhileAMovesDatabaseIsRegisteredWithoutItsURL(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, catalog, docs := catalogOn(t)
	pools := placement.New(placement.Options{MainPool: pool, Catalog: catalog, MaxConns: 4})
	t.Cleanup(func() { _ = pools.Close() })
	if err := pools.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.AddDatabase(ctx, "eu9", ""); err != nil {
		t.Fatal(err)
	}
	redis := asynq.RedisClientOpt{Addr: testenv.Redis(t)}
	client, inspector := asynq.NewClient(redis), asynq.NewInspector(redis)
	t.Cleanup(func() { _ = client.Close(); _ = inspector.Close() })
	svc := tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: tasks.NewEnqueuer(client, inspector, nil),
		Documents: docs, SchemaPool: pool, Pools: pools})
	p, err := svc.Provision(ctx, tenancy.NewTenant{Slug: "faraway-copy", Database: tenantctx.DefaultDatabase}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Migrate(ctx, p.Tenant, 0, tenancy.ActorWorker); err != nil {
		t.Fatal(err)
	}
	e := storage.AuditEntry{TenantID: p.Tenant.ID, Actor: "test", Action: string(tenancy.ActionMoveStarted),
		Detail: []byte(`{"from":"main","to":"eu9"}`)}
	if err := catalog.AppendAudit(ctx, e); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RequestDeletion(ctx, p.Tenant.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	cur, err := catalog.TenantByID(ctx, p.Tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Destroy(ctx, cur, tenancy.ActorWorker); !errors.Is(err, placement.ErrUnknownDatabase) {
		t.Fatalf("Destroy with a move's copy possibly left in database eu9, registered but without a URL here: %v; "+
			"want it to fail with placement.ErrUnknownDatabase, the erasure not complete", err)
	}
	if now, err := catalog.TenantByID(ctx, p.Tenant.ID); err != nil || now.Status != tenantctx.StatusDeleting {
		t.Errorf("after the failed destroy the tenant is %+v, %v; want it kept, deleting, for the retry", now, err)
	}
	entries, err := catalog.AuditEntries(ctx, p.Tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(entries, func(e storage.AuditEntry) bool { return e.Action == string(tenancy.ActionDeletionCompleted) }) {
		t.Errorf("the audit log records the deletion completed while database eu9 was not checked for its copy")
	}
}
