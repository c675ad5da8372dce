package storagetest

import (
	"errors"
	"testing"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

func testSetTimeZone(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	// A tenant created without a zone is in the default one.
	tn := mustCreate(t, ctx, c, tenantctx.StatusActive)
	if tn.TimeZone != tenantctx.DefaultTimeZone {
		t.Fatalf("new tenant in time zone %q, want %q", tn.TimeZone, tenantctx.DefaultTimeZone)
	}
	// One created with a zone keeps it.
	withZone := newTenant(t, tenantctx.StatusActive)
	withZone.TimeZone = "Pacific/Auckland"
	withZone, err := c.CreateTenant(ctx, withZone)
	if err != nil || withZone.TimeZone != "Pacific/Auckland" {
		t.Fatalf("CreateTenant in Pacific/Auckland = %+v, %v", withZone, err)
	}
	if stored, err := c.TenantByID(ctx, withZone.ID); err != nil || stored.TimeZone != "Pacific/Auckland" {
		t.Fatalf("stored after CreateTenant = %+v, %v", stored, err)
	}
	got, err := c.SetTimeZone(ctx, tn.ID, "America/Los_Angeles")
	if err != nil || got.TimeZone != "America/Los_Angeles" || got.Status != tn.Status || got.Plan != tn.Plan {
		t.Fatalf("SetTimeZone = %+v, %v", got, err)
	}
	if stored, err := c.TenantByID(ctx, tn.ID); err != nil || stored.TimeZone != "America/Los_Angeles" {
		t.Fatalf("stored after SetTimeZone = %+v, %v", stored, err)
	}
	if bySlug, err := c.TenantBySlug(ctx, tn.Slug); err != nil || bySlug.TimeZone != "America/Los_Angeles" {
		t.Fatalf("by slug after SetTimeZone = %+v, %v", bySlug, err)
	}
	for _, bad := range []string{"", "Local", "Mars/Olympus_Mons"} {
		if _, err := c.SetTimeZone(ctx, tn.ID, bad); !errors.Is(err, tenantctx.ErrInvalidTimeZone) {
			t.Errorf("SetTimeZone(%q) error = %v, want ErrInvalidTimeZone", bad, err)
		}
	}
	if _, err := c.SetTimeZone(ctx, tenantctx.NewID(), "UTC"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("SetTimeZone(unknown id) error = %v, want ErrNotFound", err)
	}
	// A tenant being deleted gets no new zone.
	doomed := mustCreate(t, ctx, c, tenantctx.StatusDeleting)
	if _, err := c.SetTimeZone(ctx, doomed.ID, "Europe/Berlin"); !errors.Is(err, storage.ErrTenantDeleting) {
		t.Errorf("SetTimeZone(deleting tenant) error = %v, want ErrTenantDeleting", err)
	}
	if stored, err := c.TenantByID(ctx, doomed.ID); err != nil || stored.TimeZone != doomed.TimeZone {
		t.Errorf("deleting tenant after a refused SetTimeZone = %+v, %v; want it unchanged", stored, err)
	}
}
