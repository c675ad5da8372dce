package backend_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/backend"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tenantctx"
)

// splitRoles returns the environment of a start with
// MIGRATIONS_DATABASE_URL naming a non-superuser role that owns its
// database and DATABASE_URL a fresh login role of its own that may only
// connect there, as README's "The database role" describes, and runs
// grants (as the owner) first.
func splitRoles(t *testing.T, grants string) map[string]string {
	t.Helper()
	ctx := context.Background()
	e := env(t)
	owner := testenv.PostgresAs(t, true)
	admin, err := pgx.Connect(ctx, e["DATABASE_URL"]) // a superuser, on the same server
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var app string
	if err := admin.QueryRow(ctx, "SELECT 'app_' || md5(random()::text)").Scan(&app); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE ROLE "+app+" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(owner)
	if err != nil {
		t.Fatal(err)
	}
	su := *u
	su.User = url.User("postgres")
	t.Cleanup(func() {
		ctx := context.Background()
		// What was granted to the role in the owner's database goes first.
		if c, err := pgx.Connect(ctx, su.String()); err == nil {
			_, _ = c.Exec(ctx, "DROP OWNED BY "+app)
			_ = c.Close(ctx)
		}
		if c, err := pgx.Connect(ctx, e["DATABASE_URL"]); err == nil {
			_, _ = c.Exec(ctx, "DROP ROLE IF EXISTS "+app)
			_ = c.Close(ctx)
		}
	})
	if grants != "" {
		c, err := pgx.Connect(ctx, owner)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, strings.ReplaceAll(grants, "app", app)); err != nil {
			t.Fatal(err)
		}
	}
	appURL := *u
	appURL.User = url.UserPassword(app, "unused")
	e["DATABASE_URL"] = appURL.String()
	e["MIGRATIONS_DATABASE_URL"] = owner
	e["app"] = app
	return e
}

// TestOpenRefusesAnAppRoleWithoutTheOwnersGrants: with
// MIGRATIONS_DATABASE_URL's role owning what it creates and
// DATABASE_URL's another role, a start where the owner has not granted
// the other role what README's "The database role" says stops with an
// error naming both roles and the grants. Before, both binaries started,
// and the first tenant's provisioning failed with "permission denied for
// schema tenancy" (the API's 500); with the catalog granted but not the
// defaults, each tenant was provisioned and every task of its failed with
// "permission denied for schema tenant_...". With README's grants the
// start passes and a tenant's invoice loads on DATABASE_URL's role.
func TestOpenRefusesAnAppRoleWithoutTheOwnersGrants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const defaults = `ALTER DEFAULT PRIVILEGES GRANT USAGE ON SCHEMAS TO app;
ALTER DEFAULT PRIVILEGES GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO app;
ALTER DEFAULT PRIVILEGES GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO app;`
	for _, c := range []struct {
		name, grants string
		want         []string
	}{
		{"none", "", []string{"USAGE ON SCHEMA tenancy", "ALTER DEFAULT PRIVILEGES"}},
		// Defaults for tables only: the tables of the catalog and of each
		// tenant schema are granted, their schemas are not.
		{"no schemas", `ALTER DEFAULT PRIVILEGES GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO app;`, []string{"USAGE ON SCHEMA tenancy", "USAGE ON SCHEMAS"}},
	} {
		e := splitRoles(t, c.grants)
		cfg, err := config.FromEnv(getenv(e))
		if err != nil {
			t.Fatal(err)
		}
		b, err := backend.Open(ctx, cfg, quietLogger(), backend.Options{})
		if err == nil {
			_ = b.Close()
			t.Errorf("%s: Open with DATABASE_URL's role lacking the owner's grants succeeded", c.name)
			continue
		}
		for _, want := range append([]string{"DATABASE_URL", "MIGRATIONS_DATABASE_URL", e["app"]}, c.want...) {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q lacks %q", c.name, err, want)
			}
		}
		t.Logf("%s: %v", c.name, err)
	}

	e := splitRoles(t, defaults)
	cfg, err := config.FromEnv(getenv(e))
	if err != nil {
		t.Fatal(err)
	}
	b, err := backend.Open(ctx, cfg, quietLogger(), backend.Options{})
	if err != nil {
		t.Fatalf("Open with README's grants: %v", err)
	}
	defer b.Close()
	p, err := b.Tenancy.Provision(ctx, tenancy.NewTenant{Slug: "acme"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	// The tenant:migrate task's work, which makes the tenant active.
	if _, err := b.Tenancy.Migrate(ctx, p.Tenant, 0, "test"); err != nil {
		t.Fatal(err)
	}
	err = schema.InTenant(tenantctx.WithTenant(ctx, p.Tenant), b.Pool, func(ctx context.Context, tx pgx.Tx) error {
		_, err := invoice.Create(ctx, tx, invoice.New{Number: "A-1", Customer: invoice.Customer{Name: "c", Email: "c@x"}})
		if err != nil {
			return err
		}
		_, err = invoice.Load(ctx, tx, 1)
		return err
	})
	if err != nil {
		t.Fatalf("an invoice of a tenant provisioned with README's grants, on DATABASE_URL's role: %v", err)
	}
}
