package storagetest

import (
	"errors"
	"strings"
	"testing"

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
