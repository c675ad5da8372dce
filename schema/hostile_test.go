package schema

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/tenantctx"
	"github.com/jackc/pgx/v5"
)

// P9: hostile schema names are rejected by every function before any SQL
// is sent (no acquire, no query).
func TestHostileNamesSendNoSQL(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	hostile := []string{
		`a";drop schema x;--`, "pg_catalog", "public", "tenancy", `tenant_x"y`, "../x",
		strings.Repeat("a", 10<<10), "tenant_\x00x", "Tenant_X", "tenant_ü", "", "tenant_",
		"tenant_" + strings.Repeat("a", 43), "tenant_a b", "tenant_a;drop",
	}
	calls := map[string]func(string) error{
		"Drop":    func(s string) error { return Drop(ctx, b.pool, s) },
		"Exists":  func(s string) error { _, err := Exists(ctx, b.pool, s); return err },
		"Version": func(s string) error { _, err := Version(ctx, b.pool, s); return err },
		"Migrate": func(s string) error { _, err := Migrate(ctx, b.pool, s, 0); return err },
		"InTenant": func(s string) error {
			tctx := tenantctx.WithTenant(ctx, tenantctx.Tenant{ID: "tn_x", Slug: "x", Schema: s})
			return InTenant(tctx, b.pool, func(context.Context, pgx.Tx) error {
				t.Errorf("fn called for schema %.40q", s)
				return nil
			})
		},
	}
	for name, call := range calls {
		for _, s := range hostile {
			if err := call(s); !errors.Is(err, tenantctx.ErrInvalidSchema) {
				t.Errorf("%s(%.40q): err = %v, want ErrInvalidSchema", name, s, err)
			}
		}
	}
	if n := b.count.total(); n != 0 {
		t.Errorf("%d queries/acquires sent for hostile names, want 0", n)
	}
}

// Migrate of a valid, new name creates exactly that schema.
func TestMigrateCreatesExactlyThatSchema(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	schemas := func() []string {
		rows, _ := b.pool.Query(ctx, "SELECT nspname FROM pg_catalog.pg_namespace ORDER BY 1")
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	before := schemas()
	res, err := Migrate(ctx, b.pool, "tenant_a_1", 0)
	if err != nil || !res.Created {
		t.Fatalf("Migrate = %+v, %v", res, err)
	}
	after := schemas()
	added := slices.DeleteFunc(slices.Clone(after), func(s string) bool { return slices.Contains(before, s) })
	if !slices.Equal(added, []string{"tenant_a_1"}) || len(after) != len(before)+1 {
		t.Errorf("schemas added: %v (before %v, after %v)", added, before, after)
	}
	if res, err := Migrate(ctx, b.pool, "tenant_a_1", 0); res.Created || err != nil {
		t.Errorf("second Migrate = %+v, %v", res, err)
	}
	if ok, err := Exists(ctx, b.pool, "tenant_a_1"); !ok || err != nil {
		t.Errorf("Exists = %v, %v", ok, err)
	}
}
