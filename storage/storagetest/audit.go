package storagetest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
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

// testAuditOnce: AppendAuditOnce appends an action's first entry only, and
// of concurrent calls for one tenant and action exactly one appends.
func testAuditOnce(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	a := mustCreate(t, ctx, c, tenantctx.StatusActive)
	b := mustCreate(t, ctx, c, tenantctx.StatusActive)
	const calls = 16
	var appended atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 2*calls)
	for i := range 2 * calls {
		wg.Go(func() {
			tenant := a.ID
			if i%2 == 1 {
				tenant = b.ID
			}
			ok, err := c.AppendAuditOnce(ctx, storage.AuditEntry{TenantID: tenant, Actor: "admin",
				Action: "tenant.deletion_requested", Detail: json.RawMessage(fmt.Sprintf(`{"call":%d}`, i))})
			if err != nil {
				errs <- err
			}
			if ok {
				appended.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("AppendAuditOnce: %v", err)
	}
	if n := appended.Load(); n != 2 {
		t.Errorf("%d concurrent calls per tenant: %d reported appending, want 1 per tenant", calls, n)
	}
	for _, id := range []string{a.ID, b.ID} {
		got, err := c.AuditEntries(ctx, id)
		if err != nil {
			t.Fatalf("AuditEntries(%s): %v", id, err)
		}
		if len(got) != 1 {
			t.Fatalf("AuditEntries(%s) after %d concurrent AppendAuditOnce: %d entries, want 1: %+v", id, calls, len(got), got)
		}
	}

	// Another action appends; the same one again does not; AppendAudit
	// always does.
	if ok, err := c.AppendAuditOnce(ctx, storage.AuditEntry{TenantID: a.ID, Actor: "worker", Action: "tenant.deletion_completed"}); err != nil || !ok {
		t.Errorf("AppendAuditOnce(another action) = %v, %v; want true", ok, err)
	}
	if ok, err := c.AppendAuditOnce(ctx, storage.AuditEntry{TenantID: a.ID, Actor: "worker", Action: "tenant.deletion_completed"}); err != nil || ok {
		t.Errorf("AppendAuditOnce(same action again) = %v, %v; want false", ok, err)
	}
	if err := c.AppendAudit(ctx, storage.AuditEntry{TenantID: a.ID, Actor: "admin", Action: "tenant.deletion_completed"}); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	if got, err := c.AuditEntries(ctx, a.ID); err != nil || len(got) != 3 {
		t.Errorf("AuditEntries(%s) = %d entries, %v; want 3", a.ID, len(got), err)
	}
	if _, err := c.AppendAuditOnce(ctx, storage.AuditEntry{TenantID: a.ID, Actor: "admin"}); err == nil {
		t.Error("AppendAuditOnce without an action: no error")
	}
	if err := c.AppendAudit(ctx, storage.AuditEntry{Actor: "admin", Action: "tenant.status"}); err == nil {
		t.Error("AppendAudit without a tenant id: no error")
	}
}

// testAuditUnlessLatest: AppendAuditUnlessLatest appends unless the latest
// entry of the action (among those matching among) contains match; of
// concurrent calls recording the same change, exactly one appends.
func testAuditUnlessLatest(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	a := mustCreate(t, ctx, c, tenantctx.StatusActive)
	const action = "tenant.status_changed"
	entry := func(from, to string) storage.AuditEntry {
		return storage.AuditEntry{TenantID: a.ID, Actor: "admin", Action: action,
			Detail: json.RawMessage(fmt.Sprintf(`{"from":%q,"to":%q}`, from, to))}
	}
	toward := func(to string) json.RawMessage { return json.RawMessage(fmt.Sprintf(`{"to":%q}`, to)) }
	const calls = 16
	var appended atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for range calls {
		wg.Go(func() {
			ok, err := c.AppendAuditUnlessLatest(ctx, entry("provisioning", "active"), nil, toward("active"))
			if err != nil {
				errs <- err
			}
			if ok {
				appended.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("AppendAuditUnlessLatest: %v", err)
	}
	if n := appended.Load(); n != 1 {
		t.Errorf("%d concurrent calls: %d reported appending, want 1", calls, n)
	}
	steps := []struct {
		e           storage.AuditEntry
		among, want json.RawMessage
		appended    bool
	}{
		{entry("active", "suspended"), nil, toward("suspended"), true},
		{entry("active", "suspended"), nil, toward("suspended"), false}, // the latest ends there
		{entry("suspended", "active"), nil, nil, false},                 // an empty match: any latest entry
		{entry("suspended", "active"), nil, toward("active"), true},
		// Among the entries from suspended only, the latest ends at active.
		{entry("suspended", "active"), json.RawMessage(`{"from":"suspended"}`), toward("active"), false},
		{entry("x", "y"), json.RawMessage(`{"from":"x"}`), toward("y"), true}, // none among them
	}
	for i, st := range steps {
		ok, err := c.AppendAuditUnlessLatest(ctx, st.e, st.among, st.want)
		if err != nil || ok != st.appended {
			t.Errorf("step %d: AppendAuditUnlessLatest(%s, among %s, match %s) = %v, %v; want %v", i, st.e.Detail, st.among, st.want, ok, err, st.appended)
		}
	}
	if got, err := c.AuditEntries(ctx, a.ID); err != nil || len(got) != 4 {
		t.Errorf("AuditEntries(%s) = %d entries, %v; want 4", a.ID, len(got), err)
	}
	if _, err := c.AppendAuditUnlessLatest(ctx, storage.AuditEntry{TenantID: a.ID, Actor: "admin"}, nil, nil); err == nil {
		t.Error("AppendAuditUnlessLatest without an action: no error")
	}
}
