package storagetest

import (
	"errors"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// testPlacement: "main" is registered from the start, databases are added
// once, tenants are placed on registered databases only (main by
// default), counts follow placements, and SetPlacement moves a tenant.
func testPlacement(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	counts := func() map[string]int {
		t.Helper()
		ds, err := c.Databases(ctx)
		if err != nil {
			t.Fatalf("Databases: %v", err)
		}
		m := map[string]int{}
		for i, d := range ds {
			if i > 0 && ds[i-1].Name >= d.Name {
				t.Errorf("Databases not in name order: %q before %q", ds[i-1].Name, d.Name)
			}
			m[d.Name] = d.Tenants
		}
		return m
	}
	if got := counts(); len(got) != 1 || got[tenantctx.DefaultDatabase] != 0 {
		t.Fatalf("databases of an empty catalog = %v, want main only, no tenants", got)
	}
	d, err := c.AddDatabase(ctx, "eu-2", "postgres://u:p@db2/invoicing")
	if err != nil || d.Name != "eu-2" || d.URL != "postgres://u:p@db2/invoicing" {
		t.Fatalf("AddDatabase = %+v, %v", d, err)
	}
	if _, err := c.AddDatabase(ctx, "eu-2", ""); !errors.Is(err, storage.ErrConflict) {
		t.Errorf("AddDatabase(taken name) error = %v, want ErrConflict", err)
	}
	if _, err := c.AddDatabase(ctx, "Bad Name", ""); err == nil || !errors.Is(err, tenantctx.ErrInvalidDatabase) {
		t.Errorf("AddDatabase(bad name) error = %v, want ErrInvalidDatabase", err)
	}

	onMain := mustCreate(t, ctx, c, tenantctx.StatusActive)
	if onMain.Database != tenantctx.DefaultDatabase {
		t.Errorf("new tenant placed on %q, want main", onMain.Database)
	}
	tn := newTenant(t, tenantctx.StatusActive)
	tn.Database = "eu-2"
	onEU, err := c.CreateTenant(ctx, tn)
	if err != nil || onEU.Database != "eu-2" {
		t.Fatalf("CreateTenant on eu-2 = %+v, %v", onEU, err)
	}
	// Tenants carry the generation of their database's registration.
	gens := generations(t, c)
	if d.Generation == 0 || d.Generation != gens["eu-2"] || gens["main"] == 0 || gens["main"] == d.Generation {
		t.Errorf("generations: AddDatabase %d, Databases %v; want eu-2's the same, main's another, none 0", d.Generation, gens)
	}
	if onMain.DatabaseGeneration != gens["main"] || onEU.DatabaseGeneration != gens["eu-2"] {
		t.Errorf("created tenants carry generations %d (main) and %d (eu-2), want %v",
			onMain.DatabaseGeneration, onEU.DatabaseGeneration, gens)
	}
	if got, err := c.TenantByID(ctx, onEU.ID); err != nil || got.DatabaseGeneration != gens["eu-2"] {
		t.Errorf("TenantByID(tenant on eu-2) = %+v, %v; want database generation %d", got, err, gens["eu-2"])
	}
	nowhere := newTenant(t, tenantctx.StatusActive)
	nowhere.Database = "nowhere"
	if _, err := c.CreateTenant(ctx, nowhere); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CreateTenant on an unregistered database error = %v, want ErrNotFound", err)
	}
	if got := counts(); got["main"] != 1 || got["eu-2"] != 1 {
		t.Errorf("tenant counts = %v, want main 1, eu-2 1", got)
	}

	moved, err := c.SetPlacement(ctx, onMain.ID, "main", "eu-2", gens["eu-2"])
	if err != nil || moved.Database != "eu-2" || moved.Status != onMain.Status || moved.DatabaseGeneration != gens["eu-2"] {
		t.Fatalf("SetPlacement = %+v, %v; want on eu-2 (generation %d)", moved, err, gens["eu-2"])
	}
	if got, err := c.TenantByID(ctx, onMain.ID); err != nil || got.Database != "eu-2" || got.DatabaseGeneration != gens["eu-2"] {
		t.Errorf("TenantByID after SetPlacement = %+v, %v; want database eu-2", got, err)
	}
	if got, err := c.TenantBySlug(ctx, onMain.Slug); err != nil || got.Database != "eu-2" || got.DatabaseGeneration != gens["eu-2"] {
		t.Errorf("TenantBySlug after SetPlacement = %+v, %v; want database eu-2", got, err)
	}
	if got := counts(); got["main"] != 0 || got["eu-2"] != 2 {
		t.Errorf("tenant counts after the move = %v, want main 0, eu-2 2", got)
	}
	// A second move started from main loses: the tenant is on eu-2 now.
	if _, err := c.SetPlacement(ctx, onMain.ID, "main", "main", 0); !errors.Is(err, storage.ErrPlacementChanged) {
		t.Errorf("SetPlacement from a stale placement error = %v, want ErrPlacementChanged", err)
	}
	if got, err := c.TenantByID(ctx, onMain.ID); err != nil || got.Database != "eu-2" {
		t.Errorf("placement after a stale SetPlacement = %+v, %v; want eu-2 kept", got, err)
	}
	if again, err := c.SetPlacement(ctx, onMain.ID, "eu-2", "eu-2", 0); err != nil || again.Database != "eu-2" {
		t.Errorf("SetPlacement of the same placement again = %+v, %v", again, err)
	}
	if _, err := c.SetPlacement(ctx, onMain.ID, "eu-2", "nowhere", 0); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("SetPlacement(unregistered database) error = %v, want ErrNotFound", err)
	}
	if _, err := c.SetPlacement(ctx, tenantctx.NewID(), "main", "eu-2", 0); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("SetPlacement(unknown tenant) error = %v, want ErrNotFound", err)
	}
	// A tenant being deleted (or still provisioning) keeps its placement:
	// its destroy erases where its schema is.
	leaving := mustCreate(t, ctx, c, tenantctx.StatusDeleting)
	if _, err := c.SetPlacement(ctx, leaving.ID, "main", "eu-2", 0); !errors.Is(err, storage.ErrInvalidTransition) {
		t.Errorf("SetPlacement(deleting tenant) error = %v, want ErrInvalidTransition", err)
	}
	if got, err := c.TenantByID(ctx, leaving.ID); err != nil || got.Database != tenantctx.DefaultDatabase {
		t.Errorf("placement of the deleting tenant after a refused move = %+v, %v; want main", got, err)
	}
}

// testRemoveDatabase: a registered database without tenants is removed;
// one holding tenants, the catalog's own, and an unknown name are refused.
func testRemoveDatabase(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	registered := map[string]storage.Database{}
	for _, name := range []string{"eu-2", "eu-3"} {
		d, err := c.AddDatabase(ctx, name, "")
		if err != nil {
			t.Fatalf("AddDatabase(%s): %v", name, err)
		}
		registered[name] = d
	}
	tn := newTenant(t, tenantctx.StatusActive)
	tn.Database = "eu-2"
	if _, err := c.CreateTenant(ctx, tn); err != nil {
		t.Fatalf("CreateTenant on eu-2: %v", err)
	}
	if err := c.RemoveDatabase(ctx, "eu-2"); !errors.Is(err, storage.ErrInUse) || strings.Contains(err.Error(), "already exists") {
		t.Errorf("RemoveDatabase(a database holding a tenant) = %v, want ErrInUse", err)
	}
	if err := c.RemoveDatabase(ctx, tenantctx.DefaultDatabase); !errors.Is(err, storage.ErrInUse) || strings.Contains(err.Error(), "already exists") {
		t.Errorf("RemoveDatabase(main) = %v, want ErrInUse", err)
	}
	for _, name := range []string{"nowhere", "No Where"} {
		if err := c.RemoveDatabase(ctx, name); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("RemoveDatabase(%q) = %v, want ErrNotFound", name, err)
		}
	}
	if err := c.RemoveDatabase(ctx, "eu-3"); err != nil {
		t.Fatalf("RemoveDatabase(an empty database): %v", err)
	}
	if err := c.RemoveDatabase(ctx, "eu-3"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RemoveDatabase(eu-3) again = %v, want ErrNotFound", err)
	}
	ds, err := c.Databases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range ds {
		names = append(names, d.Name)
	}
	if len(names) != 2 || names[0] != "eu-2" || names[1] != tenantctx.DefaultDatabase {
		t.Errorf("databases after the removal = %v, want [eu-2 main]", names)
	}
	// A new tenant can no longer be placed on the removed database.
	gone := newTenant(t, tenantctx.StatusActive)
	gone.Database = "eu-3"
	if _, err := c.CreateTenant(ctx, gone); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CreateTenant on a removed database = %v, want ErrNotFound", err)
	}
	// Nor moved onto the registration it had (a move that copied a schema
	// there before the removal).
	staying := mustCreate(t, ctx, c, tenantctx.StatusActive)
	if _, err := c.SetPlacement(ctx, staying.ID, tenantctx.DefaultDatabase, "eu-3", registered["eu-3"].Generation); !errors.Is(err, storage.ErrRegistrationChanged) {
		t.Errorf("SetPlacement onto removed eu-3's registration = %v, want ErrRegistrationChanged", err)
	}

	// Registered again under the same name, it is a new registration: a
	// larger generation than any before, which its tenants carry.
	before := generations(t, c)
	again, err := c.AddDatabase(ctx, "eu-3", "postgres://elsewhere/invoicing")
	if err != nil {
		t.Fatalf("AddDatabase(eu-3) again: %v", err)
	}
	for name, g := range before {
		if again.Generation <= g {
			t.Errorf("eu-3 registered again: generation %d, not larger than %s's %d", again.Generation, name, g)
		}
	}
	if got := generations(t, c)["eu-3"]; got != again.Generation {
		t.Errorf("Databases: eu-3 generation %d, want %d", got, again.Generation)
	}
	back, err := c.CreateTenant(ctx, gone)
	if err != nil || back.DatabaseGeneration != again.Generation {
		t.Errorf("CreateTenant on eu-3 registered again = %+v, %v; want database generation %d", back, err, again.Generation)
	}
	// A switch onto the old registration is refused and changes nothing;
	// onto the new one, or any (0), it is made.
	if _, err := c.SetPlacement(ctx, staying.ID, tenantctx.DefaultDatabase, "eu-3", registered["eu-3"].Generation); !errors.Is(err, storage.ErrRegistrationChanged) {
		t.Errorf("SetPlacement onto eu-3's old registration after it was registered again = %v, want ErrRegistrationChanged", err)
	}
	if got, err := c.TenantByID(ctx, staying.ID); err != nil || got.Database != tenantctx.DefaultDatabase {
		t.Errorf("placement after a refused SetPlacement = %+v, %v; want main kept", got, err)
	}
	if moved, err := c.SetPlacement(ctx, staying.ID, tenantctx.DefaultDatabase, "eu-3", again.Generation); err != nil ||
		moved.Database != "eu-3" || moved.DatabaseGeneration != again.Generation {
		t.Errorf("SetPlacement onto eu-3's current registration = %+v, %v; want on eu-3 (generation %d)", moved, err, again.Generation)
	}
	if moved, err := c.SetPlacement(ctx, staying.ID, "eu-3", tenantctx.DefaultDatabase, 0); err != nil || moved.Database != tenantctx.DefaultDatabase {
		t.Errorf("SetPlacement onto main, any registration = %+v, %v", moved, err)
	}
}

// generations returns the registered databases' generations by name.
func generations(t *testing.T, c storage.Catalog) map[string]int64 {
	t.Helper()
	ds, err := c.Databases(testContext(t))
	if err != nil {
		t.Fatalf("Databases: %v", err)
	}
	m := map[string]int64{}
	for _, d := range ds {
		m[d.Name] = d.Generation
	}
	return m
}
