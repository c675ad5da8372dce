package tenancy_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
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
