package enqueueapp_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/backend"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tenantctx"
)

// newLeastPrivilegeFixture is newFixture with DATABASE_URL naming a role
// that owns its database and is not superuser, as production runs it.
func newLeastPrivilegeFixture(t *testing.T) *fixture {
	t.Helper()
	e := env(t)
	e["DATABASE_URL"] = testenv.PostgresAs(t, true)
	if testenv.IsSuperuser(t, e["DATABASE_URL"]) {
		t.Fatal("testenv.PostgresAs gave a superuser: the test proves nothing")
	}
	cfg, err := config.FromEnv(getenv(e))
	if err != nil {
		t.Fatal(err)
	}
	deps, err := backend.Open(context.Background(), cfg, quietLogger(), backend.Options{})
	if err != nil {
		t.Fatalf("open as a non-superuser role: %v", err)
	}
	t.Cleanup(func() { _ = deps.Close() })
	return &fixture{env: e, deps: deps}
}

// TestDBAddRefusesADatabaseItCannotCreateSchemasIn: a tenant database whose
// URL's role may not create schemas there (not its owner, no CREATE on it)
// is refused by "db add", saying what to grant. Registered, it would take
// every new tenant placed by load (it has the fewest), and each would stay
// "provisioning", its tenant:migrate failing with "permission denied for
// database" until archived.
func TestDBAddRefusesADatabaseItCannotCreateSchemasIn(t *testing.T) {
	t.Parallel()
	f := newLeastPrivilegeFixture(t)
	noCreate := testenv.PostgresAs(t, false)
	code, stdout, stderr := f.run(t, false, "db", "add", "eu2", noCreate)
	if code != enqueueapp.ExitFailure || !strings.Contains(stderr, "GRANT CREATE ON DATABASE") {
		t.Fatalf("db add of a database the role cannot create schemas in: exit %d stdout %q stderr %q; want exit 1 naming the grant", code, stdout, stderr)
	}
	if _, list, _ := f.run(t, false, "db", "list"); strings.Contains(list, "eu2") {
		t.Fatalf("db list after the refused db add shows eu2:\n%s", list)
	}
	code, stdout, stderr = f.run(t, false, "tenant", "add", "hooli")
	var got struct{ Database string }
	if code != enqueueapp.ExitOK || json.Unmarshal([]byte(stdout), &got) != nil || got.Database != tenantctx.DefaultDatabase {
		t.Fatalf("tenant add: exit %d stdout %q stderr %q; want it on main", code, stdout, stderr)
	}
}

// TestLeastPrivilegeMoveAndPrune: with DATABASE_URL naming a non-superuser
// role that owns its database, a second database owned by another such
// role is registered (db add), a tenant is provisioned and migrated on
// main, moved to the second database and back (COPY, lock, cancel checks,
// the old schema dropped each time), and its deleted invoices' documents
// are pruned where it lives.
func TestLeastPrivilegeMoveAndPrune(t *testing.T) {
	t.Parallel()
	f := newLeastPrivilegeFixture(t)
	ctx := context.Background()
	other := testenv.PostgresAs(t, true)
	if code, _, stderr := f.run(t, false, "db", "add", "eu2", other); code != enqueueapp.ExitOK {
		t.Fatalf("db add: exit %d stderr %q", code, stderr)
	}
	p, err := f.deps.Tenancy.Provision(ctx, tenancy.NewTenant{Slug: "acme", Database: tenantctx.DefaultDatabase}, "test")
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	tn := p.Tenant
	if _, err := schema.Migrate(ctx, f.deps.SchemaPool, tn.Schema, 0); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if _, err := f.deps.Catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	err = schema.InTenant(tenantctx.WithTenant(ctx, tn), f.deps.Pool, func(ctx context.Context, tx pgx.Tx) error {
		ids, err = invoice.Create(ctx, tx,
			invoice.New{Number: "A-1", Status: "sent", Customer: invoice.Customer{Name: "Zoë", Email: "z@acme.example"}},
			invoice.New{Number: "A-2", Status: "sent", Customer: invoice.Customer{Name: "Ada", Email: "a@acme.example"}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"eu2", tenantctx.DefaultDatabase} {
		code, stdout, stderr := f.run(t, false, "tenant", "move", "acme", "--to", to, "--grace", "10ms")
		var m tenancy.Moved
		if code != enqueueapp.ExitOK || json.Unmarshal([]byte(stdout), &m) != nil || m.To != to || !m.OldSchemaDropped || m.Rows < 4 {
			t.Fatalf("tenant move to %s: exit %d stdout %q stderr %q", to, code, stdout, stderr)
		}
	}
	tn, err = f.deps.Catalog.TenantByID(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := placement.PoolFor(ctx, f.deps.Pools, f.deps.Pool, tn)
	if err != nil {
		t.Fatal(err)
	}
	err = schema.InTenant(tenantctx.WithTenant(ctx, tn), pool, func(ctx context.Context, tx pgx.Tx) error {
		for _, id := range ids {
			info, err := f.deps.Documents.Put(ctx, tn.ID, invoice.DocumentKey(id), strings.NewReader("%PDF-1.4"))
			if err != nil {
				return err
			}
			if err := invoice.RecordDocument(ctx, tx, invoice.Document{InvoiceID: id, StorageKey: info.Key, SHA256: info.SHA256, Bytes: info.Bytes}); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, "DELETE FROM invoices WHERE id = $1", ids[1])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := f.run(t, false, "documents", "prune")
	var got tenancy.DocumentsPruned
	if code != enqueueapp.ExitOK || json.Unmarshal([]byte(stdout), &got) != nil || got.Checked != 2 || got.Removed != 1 {
		t.Fatalf("documents prune: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
}
