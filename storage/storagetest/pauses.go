package storagetest

import (
	"errors"
	"slices"
	"testing"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// testQueuePauses: a pause is recorded once however often it is set,
// cleared by SetQueuePaused false, refused for an unknown tenant, and goes
// with its deleted tenant.
func testQueuePauses(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	a := mustCreate(t, ctx, c, tenantctx.StatusActive)
	b := mustCreate(t, ctx, c, tenantctx.StatusSuspended)
	paused := func() []string {
		t.Helper()
		ids, err := c.PausedTenants(ctx)
		if err != nil {
			t.Fatalf("PausedTenants: %v", err)
		}
		return ids
	}
	if got := paused(); len(got) != 0 {
		t.Fatalf("paused before any pause = %v", got)
	}
	for _, id := range []string{b.ID, a.ID, a.ID} {
		if err := c.SetQueuePaused(ctx, id, true); err != nil {
			t.Fatalf("SetQueuePaused(%s, true): %v", id, err)
		}
	}
	want := []string{a.ID, b.ID}
	slices.Sort(want)
	if got := paused(); !slices.Equal(got, want) {
		t.Fatalf("paused = %v, want %v", got, want)
	}
	if err := c.SetQueuePaused(ctx, "tn_aaaaaaaaaaaaaaaaaaaaaaaaaa", true); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("pause of an unknown tenant: %v, want ErrNotFound", err)
	}
	for range 2 {
		if err := c.SetQueuePaused(ctx, a.ID, false); err != nil {
			t.Fatalf("SetQueuePaused(%s, false): %v", a.ID, err)
		}
	}
	if got := paused(); !slices.Equal(got, []string{b.ID}) {
		t.Fatalf("paused after clearing %s = %v, want [%s]", a.ID, got, b.ID)
	}
	if err := c.DeleteTenant(ctx, b.ID); err != nil {
		t.Fatalf("DeleteTenant: %v", err)
	}
	if got := paused(); len(got) != 0 {
		t.Fatalf("paused after deleting %s = %v, want none", b.ID, got)
	}
}
