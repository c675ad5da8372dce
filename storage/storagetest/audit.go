package storagetest

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

func testAudit(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	a := mustCreate(t, ctx, c, tenantctx.StatusDeleting)
	b := mustCreate(t, ctx, c, tenantctx.StatusActive)
	// Explicit times are whole microseconds: PostgreSQL keeps no more.
	base := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	entries := []storage.AuditEntry{
		{At: base.Add(2 * time.Second), TenantID: a.ID, Actor: "worker", Action: "tenant.migrate", Detail: json.RawMessage(`{"from": 0, "to": 1}`)},
		{At: base, TenantID: a.ID, Actor: "admin", Action: "tenant.provision", Detail: json.RawMessage(`{"slug":"` + a.Slug + `"}`)},
		{At: base.Add(time.Second), TenantID: b.ID, Actor: "admin", Action: "tenant.provision"},
	}
	for _, e := range entries {
		if err := c.AppendAudit(ctx, e); err != nil {
			t.Fatalf("AppendAudit(%+v): %v", e, err)
		}
	}
	before := time.Now().Add(-time.Minute) // slack for a database clock
	if err := c.AppendAudit(ctx, storage.AuditEntry{TenantID: a.ID, Actor: "admin", Action: "tenant.delete"}); err != nil {
		t.Fatalf("AppendAudit(zero At): %v", err)
	}
	if err := c.DeleteTenant(ctx, a.ID); err != nil {
		t.Fatalf("DeleteTenant(%s): %v", a.ID, err)
	}

	got, err := c.AuditEntries(ctx, a.ID)
	if err != nil {
		t.Fatalf("AuditEntries(%s): %v", a.ID, err)
	}
	if len(got) != 3 {
		t.Fatalf("AuditEntries(deleted tenant) returned %d entries, want 3: %+v", len(got), got)
	}
	wantOrder := []storage.AuditEntry{entries[1], entries[0]}
	for i, want := range wantOrder {
		assertSameEntry(t, got[i], want)
	}
	last := got[2]
	if last.Action != "tenant.delete" || last.At.Before(before) || last.At.After(time.Now().Add(time.Minute)) {
		t.Errorf("entry appended with zero At = %+v, want action tenant.delete at about now", last)
	}

	gotB, err := c.AuditEntries(ctx, b.ID)
	if err != nil {
		t.Fatalf("AuditEntries(%s): %v", b.ID, err)
	}
	if len(gotB) != 1 {
		t.Fatalf("AuditEntries(%s) returned %d entries, want 1: %+v", b.ID, len(gotB), gotB)
	}
	assertSameEntry(t, gotB[0], entries[2])

	none, err := c.AuditEntries(ctx, tenantctx.NewID())
	if err != nil || len(none) != 0 {
		t.Errorf("AuditEntries(unknown tenant) = %+v, %v; want none", none, err)
	}
}

// assertSameEntry compares audit entries; Detail as JSON values, since a
// store may normalize it.
func assertSameEntry(t *testing.T, got, want storage.AuditEntry) {
	t.Helper()
	if !got.At.Equal(want.At) || got.TenantID != want.TenantID || got.Actor != want.Actor || got.Action != want.Action {
		t.Errorf("audit entry = %+v, want %+v", got, want)
	}
	if !sameJSON(t, got.Detail, want.Detail) {
		t.Errorf("audit entry %s detail = %s, want %s", want.Action, got.Detail, want.Detail)
	}
}

// sameJSON reports whether a and b hold equal JSON values; empty equals
// empty.
func sameJSON(t *testing.T, a, b json.RawMessage) bool {
	t.Helper()
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Errorf("detail %s: %v", a, err)
		return false
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Errorf("detail %s: %v", b, err)
		return false
	}
	return reflect.DeepEqual(va, vb)
}
