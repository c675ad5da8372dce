package storagetest

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

func testAPIKeys(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	a := mustCreate(t, ctx, c, tenantctx.StatusActive)
	b := mustCreate(t, ctx, c, tenantctx.StatusActive)
	mustKey := func(tenantID string) string {
		t.Helper()
		key, err := c.CreateAPIKey(ctx, tenantID)
		if err != nil {
			t.Fatalf("CreateAPIKey(%s): %v", tenantID, err)
		}
		if err := storage.CheckAPIKeyFormat(key); err != nil {
			t.Fatalf("CreateAPIKey(%s) = %q: malformed: %v", tenantID, key, err)
		}
		return key
	}
	a1, a2, b1 := mustKey(a.ID), mustKey(a.ID), mustKey(b.ID)
	if a1 == a2 || a1 == b1 {
		t.Fatalf("CreateAPIKey returned a key twice")
	}
	wantOwner := func(key, want string) {
		t.Helper()
		got, err := c.TenantForAPIKey(ctx, key)
		if err != nil || got != want {
			t.Errorf("TenantForAPIKey(key of %s) = %q, %v; want %s", want, got, err, want)
		}
	}
	wantNotFound := func(what, key string) {
		t.Helper()
		if got, err := c.TenantForAPIKey(ctx, key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("TenantForAPIKey(%s) = %q, %v; want ErrNotFound", what, got, err)
		}
	}
	wantOwner(a1, a.ID)
	wantOwner(a2, a.ID)
	wantOwner(b1, b.ID)

	if err := c.RevokeAPIKeys(ctx, a.ID); err != nil {
		t.Fatalf("RevokeAPIKeys(%s): %v", a.ID, err)
	}
	wantNotFound("revoked key", a1)
	wantNotFound("revoked key", a2)
	wantOwner(b1, b.ID)
	if err := c.RevokeAPIKeys(ctx, a.ID); err != nil {
		t.Errorf("RevokeAPIKeys(%s) again: %v", a.ID, err)
	}

	a3 := mustKey(a.ID)
	wantOwner(a3, a.ID)
	wantNotFound("revoked key after a new one", a1)
}

func testAPIKeysRejected(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	tn := mustCreate(t, ctx, c, tenantctx.StatusActive)
	key, err := c.CreateAPIKey(ctx, tn.ID)
	if err != nil {
		t.Fatalf("CreateAPIKey(%s): %v", tn.ID, err)
	}
	unknown, _ := storage.NewAPIKey()
	flipped := []byte(key)
	if flipped[10] == 'A' {
		flipped[10] = 'B'
	} else {
		flipped[10] = 'A'
	}
	for _, tt := range []struct{ name, key string }{
		{"empty", ""},
		{"prefix only", storage.APIKeyPrefix},
		{"no prefix", strings.TrimPrefix(key, storage.APIKeyPrefix)},
		{"other prefix", "xk_" + strings.TrimPrefix(key, storage.APIKeyPrefix)},
		{"one character changed", string(flipped)},
		{"extra character", key + "A"},
		{"truncated", key[:len(key)-1]},
		{"hash instead of key", storage.HashAPIKey(key)},
		{"sql", storage.APIKeyPrefix + "' OR '1'='1"},
		{"10 KB", storage.APIKeyPrefix + strings.Repeat("A", 10<<10)},
		{"unknown well-formed key", unknown},
	} {
		if got, err := c.TenantForAPIKey(ctx, tt.key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("TenantForAPIKey(%s) = %q, %v; want ErrNotFound", tt.name, got, err)
		}
	}
	if _, err := c.CreateAPIKey(ctx, tenantctx.NewID()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CreateAPIKey(unknown tenant) error = %v, want ErrNotFound", err)
	}
	if got, err := c.TenantForAPIKey(ctx, key); err != nil || got != tn.ID {
		t.Errorf("TenantForAPIKey(valid key) = %q, %v; want %s", got, err, tn.ID)
	}
}

func testAPIKeyLifecycle(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	a := mustCreate(t, ctx, c, tenantctx.StatusActive)
	b := mustCreate(t, ctx, c, tenantctx.StatusActive)
	issue := func(tenantID string) (storage.APIKey, string) {
		t.Helper()
		k, key, err := c.IssueAPIKey(ctx, tenantID)
		if err != nil {
			t.Fatalf("IssueAPIKey(%s): %v", tenantID, err)
		}
		if k.ID <= 0 || k.TenantID != tenantID || k.Prefix != storage.APIKeyDisplayPrefix(key) ||
			len(k.Prefix) != storage.APIKeyDisplayLen || k.CreatedAt.IsZero() || k.LastUsedAt != nil || k.RevokedAt != nil {
			t.Fatalf("IssueAPIKey(%s) = %+v for key %s...", tenantID, k, k.Prefix)
		}
		return k, key
	}
	a1, keyA1 := issue(a.ID)
	a2, keyA2 := issue(a.ID)
	b1, keyB1 := issue(b.ID)
	if a1.ID == a2.ID || a2.ID == b1.ID {
		t.Fatalf("key ids %d, %d, %d are not distinct", a1.ID, a2.ID, b1.ID)
	}
	if _, _, err := c.IssueAPIKey(ctx, tenantctx.NewID()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("IssueAPIKey(unknown tenant) = %v, want ErrNotFound", err)
	}
	// A tenant being deleted gets no new key: its deletion locked the keys
	// it has, and a key issued now would escape that.
	leaving := mustCreate(t, ctx, c, tenantctx.StatusDeleting)
	if _, _, err := c.IssueAPIKey(ctx, leaving.ID); !errors.Is(err, storage.ErrTenantDeleting) {
		t.Errorf("IssueAPIKey(deleting tenant) = %v, want ErrTenantDeleting", err)
	}
	if keys, err := c.ListAPIKeys(ctx, leaving.ID); err != nil || len(keys) != 0 {
		t.Errorf("keys of the deleting tenant after a refused IssueAPIKey: %+v, %v; want none", keys, err)
	}

	list := func(tenantID string) []storage.APIKey {
		t.Helper()
		keys, err := c.ListAPIKeys(ctx, tenantID)
		if err != nil {
			t.Fatalf("ListAPIKeys(%s): %v", tenantID, err)
		}
		return keys
	}
	if got := list(a.ID); len(got) != 2 || got[0].ID != a1.ID || got[1].ID != a2.ID || got[0].Prefix != a1.Prefix {
		t.Fatalf("ListAPIKeys(a) = %+v, want keys %d and %d in that order", got, a1.ID, a2.ID)
	}
	if got := list(tenantctx.NewID()); len(got) != 0 {
		t.Errorf("ListAPIKeys(unknown tenant) = %+v, want none", got)
	}

	// Revoking one key leaves the tenant's other keys and other tenants'
	// keys valid; another tenant's key id is not found.
	if _, err := c.RevokeAPIKey(ctx, b.ID, a1.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RevokeAPIKey(b, key of a) = %v, want ErrNotFound", err)
	}
	if _, err := c.RevokeAPIKey(ctx, a.ID, b1.ID+a2.ID+1000); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RevokeAPIKey(unknown id) = %v, want ErrNotFound", err)
	}
	// Of calls that overlap, exactly one revokes the key; a later one finds
	// it revoked, without an error.
	var wg sync.WaitGroup
	var revokedBy atomic.Int32
	for range 8 {
		wg.Go(func() {
			revoked, err := c.RevokeAPIKey(ctx, a.ID, a1.ID)
			if err != nil {
				t.Errorf("RevokeAPIKey(a, %d): %v", a1.ID, err)
			}
			if revoked {
				revokedBy.Add(1)
			}
		})
	}
	wg.Wait()
	if n := revokedBy.Load(); n != 1 {
		t.Errorf("%d of 8 concurrent RevokeAPIKey calls reported revoking the key, want 1", n)
	}
	if revoked, err := c.RevokeAPIKey(ctx, a.ID, a1.ID); err != nil || revoked {
		t.Errorf("RevokeAPIKey again = %v, %v; want false, nil", revoked, err)
	}
	if _, err := c.TenantForAPIKey(ctx, keyA1); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("revoked key: %v, want ErrNotFound", err)
	}
	for key, want := range map[string]string{keyA2: a.ID, keyB1: b.ID} {
		if got, err := c.TenantForAPIKey(ctx, key); err != nil || got != want {
			t.Errorf("unrevoked key = %q, %v; want %s", got, err, want)
		}
	}
	got := list(a.ID)
	if got[0].RevokedAt == nil || got[1].RevokedAt != nil {
		t.Errorf("after revoking key %d: %+v", a1.ID, got)
	}

	// Last use: set by hash, never moved back, unknown hashes ignored.
	t1 := time.Now().UTC().Add(-time.Minute).Truncate(time.Microsecond)
	t2 := t1.Add(30 * time.Second)
	uses := map[string]time.Time{storage.HashAPIKey(keyA2): t2, storage.HashAPIKey("tk_unknown"): t2}
	if err := c.RecordAPIKeyUse(ctx, uses); err != nil {
		t.Fatalf("RecordAPIKeyUse: %v", err)
	}
	if err := c.RecordAPIKeyUse(ctx, map[string]time.Time{storage.HashAPIKey(keyA2): t1}); err != nil {
		t.Fatalf("RecordAPIKeyUse (older): %v", err)
	}
	if err := c.RecordAPIKeyUse(ctx, nil); err != nil {
		t.Errorf("RecordAPIKeyUse(nil): %v", err)
	}
	got = list(a.ID)
	if got[1].LastUsedAt == nil || !got[1].LastUsedAt.Equal(t2) || got[0].LastUsedAt != nil {
		t.Errorf("last use after recording %v then %v: %+v", t2, t1, got)
	}
	if got := list(b.ID); got[0].LastUsedAt != nil {
		t.Errorf("another tenant's key got a last use: %+v", got)
	}
}

// testAPIKeyWithdrawal: a key the caller made is stored once
// (StoreAPIKey); WithdrawAPIKey revokes it, and a key it finds unstored is
// stored revoked, so that a StoreAPIKey of it coming later (one whose
// answer was lost, still in flight) fails: either way the key never
// authenticates.
func testAPIKeyWithdrawal(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	a := mustCreate(t, ctx, c, tenantctx.StatusActive)
	b := mustCreate(t, ctx, c, tenantctx.StatusActive)
	refused := func(what, key string) {
		t.Helper()
		if got, err := c.TenantForAPIKey(ctx, key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("TenantForAPIKey(%s) = %q, %v; want ErrNotFound", what, got, err)
		}
	}

	stored, _ := storage.NewAPIKey()
	k, err := c.StoreAPIKey(ctx, a.ID, stored)
	if err != nil {
		t.Fatalf("StoreAPIKey(%s): %v", a.ID, err)
	}
	if k.ID <= 0 || k.TenantID != a.ID || k.Prefix != storage.APIKeyDisplayPrefix(stored) || k.CreatedAt.IsZero() || k.RevokedAt != nil {
		t.Fatalf("StoreAPIKey(%s) = %+v for key %s...", a.ID, k, storage.APIKeyDisplayPrefix(stored))
	}
	if got, err := c.TenantForAPIKey(ctx, stored); err != nil || got != a.ID {
		t.Fatalf("TenantForAPIKey(stored key) = %q, %v; want %s", got, err, a.ID)
	}
	if _, err := c.StoreAPIKey(ctx, a.ID, stored); !errors.Is(err, storage.ErrConflict) {
		t.Errorf("StoreAPIKey(the same key again) = %v, want ErrConflict", err)
	}
	if _, err := c.WithdrawAPIKey(ctx, b.ID, stored); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("WithdrawAPIKey(b, key of a) = %v, want ErrNotFound", err)
	}
	if got, err := c.TenantForAPIKey(ctx, stored); err != nil || got != a.ID {
		t.Errorf("after another tenant's WithdrawAPIKey of it: TenantForAPIKey = %q, %v; want %s", got, err, a.ID)
	}
	w, err := c.WithdrawAPIKey(ctx, a.ID, stored)
	if err != nil || w.ID != k.ID || w.TenantID != a.ID || w.RevokedAt == nil {
		t.Fatalf("WithdrawAPIKey(stored key) = %+v, %v; want key %d revoked", w, err, k.ID)
	}
	refused("withdrawn key", stored)
	if again, err := c.WithdrawAPIKey(ctx, a.ID, stored); err != nil || again.ID != k.ID || again.RevokedAt == nil || !again.RevokedAt.Equal(*w.RevokedAt) {
		t.Errorf("WithdrawAPIKey again = %+v, %v; want key %d, revoked at %v still", again, err, k.ID, *w.RevokedAt)
	}

	// A key the catalog has not stored (yet) is stored revoked: a store of
	// it that comes later fails, and the key is never valid.
	late, _ := storage.NewAPIKey()
	w, err = c.WithdrawAPIKey(ctx, a.ID, late)
	if err != nil || w.ID <= 0 || w.ID == k.ID || w.TenantID != a.ID || w.Prefix != storage.APIKeyDisplayPrefix(late) || w.RevokedAt == nil {
		t.Fatalf("WithdrawAPIKey(unstored key) = %+v, %v; want a new record, revoked", w, err)
	}
	if _, err := c.StoreAPIKey(ctx, a.ID, late); !errors.Is(err, storage.ErrConflict) {
		t.Errorf("StoreAPIKey(a withdrawn key) = %v, want ErrConflict", err)
	}
	refused("key withdrawn before it was stored", late)
	keys, err := c.ListAPIKeys(ctx, a.ID)
	if err != nil || len(keys) != 2 || keys[0].ID != k.ID || keys[1].ID != w.ID || keys[0].RevokedAt == nil || keys[1].RevokedAt == nil {
		t.Errorf("ListAPIKeys(a) = %+v, %v; want keys %d and %d, both revoked", keys, err, k.ID, w.ID)
	}

	unknown, _ := storage.NewAPIKey()
	if _, err := c.WithdrawAPIKey(ctx, tenantctx.NewID(), unknown); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("WithdrawAPIKey(unknown tenant) = %v, want ErrNotFound", err)
	}
	if _, err := c.StoreAPIKey(ctx, tenantctx.NewID(), unknown); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("StoreAPIKey(unknown tenant) = %v, want ErrNotFound", err)
	}
	leaving := mustCreate(t, ctx, c, tenantctx.StatusDeleting)
	if _, err := c.StoreAPIKey(ctx, leaving.ID, unknown); !errors.Is(err, storage.ErrTenantDeleting) {
		t.Errorf("StoreAPIKey(deleting tenant) = %v, want ErrTenantDeleting", err)
	}
	if _, err := c.StoreAPIKey(ctx, b.ID, "tk_short"); err == nil {
		t.Errorf("StoreAPIKey(malformed key) stored it")
	}
	if keys, err := c.ListAPIKeys(ctx, b.ID); err != nil || len(keys) != 0 {
		t.Errorf("keys of b after a refused store and withdrawal: %+v, %v; want none", keys, err)
	}
}
