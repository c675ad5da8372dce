package storage_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// An application role that may use the catalog's tables but not create
// schemas starts fine once the catalog is migrated: a start with nothing
// pending runs no DDL.
func TestMigratedCatalogNeedsNoDDLPrivilege(t *testing.T) {
	t.Parallel()
	owner := setupPostgres(t) // migrates as the superuser
	ctx := testContext(t)

	role := "app_" + strings.ToLower(tenantctx.NewID()[3:])
	quoted := pgx.Identifier{role}.Sanitize()
	for _, stmt := range []string{
		`CREATE ROLE ` + quoted + ` LOGIN`,
		`GRANT USAGE ON SCHEMA tenancy TO ` + quoted,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA tenancy TO ` + quoted,
	} {
		if _, err := owner.pool.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	t.Cleanup(func() { // roles are cluster-wide: drop it
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, stmt := range []string{`DROP OWNED BY ` + quoted, `DROP ROLE ` + quoted} {
			if _, err := owner.pool.Exec(ctx, stmt); err != nil {
				t.Errorf("%s: %v", stmt, err)
			}
		}
	})

	connURL, err := url.Parse(owner.pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	connURL.User = url.User(role)
	appPool := newTestPool(t, connURL.String())
	var canCreate bool
	if err := appPool.QueryRow(ctx,
		`SELECT pg_catalog.has_database_privilege(current_user, current_database(), 'CREATE')`).Scan(&canCreate); err != nil {
		t.Fatal(err)
	}
	if canCreate {
		t.Fatalf("role %s may create schemas; the test proves nothing", role)
	}

	if err := storage.MigrateCatalog(ctx, appPool, nil); err != nil {
		t.Fatalf("MigrateCatalog as %s: %v", role, err)
	}
	app := storage.NewPostgres(appPool)
	tn, err := tenantctx.New("least-privilege", "Least Privilege", "free")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.CreateTenant(ctx, tn); err != nil {
		t.Errorf("CreateTenant as %s: %v", role, err)
	}
	if _, err := app.TenantBySlug(ctx, tn.Slug); err != nil {
		t.Errorf("TenantBySlug as %s: %v", role, err)
	}
}
