package memstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// IssueAPIKey stores the hash and display prefix of a new key for the
// tenant and returns its record and the plaintext key, the only time it is
// ever seen; storage.ErrTenantDeleting for a tenant being deleted.
func (m *Catalog) IssueAPIKey(ctx context.Context, tenantID string) (storage.APIKey, string, error) {
	key, _ := storage.NewAPIKey()
	k, err := m.StoreAPIKey(ctx, tenantID, key)
	if err != nil {
		return storage.APIKey{}, "", err
	}
	return k, key, nil
}

// StoreAPIKey is IssueAPIKey with a key the caller made
// (storage.NewAPIKey); storage.ErrConflict when the key is stored
// already, withdrawn included.
func (m *Catalog) StoreAPIKey(_ context.Context, tenantID, key string) (storage.APIKey, error) {
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return storage.APIKey{}, fmt.Errorf("create api key: %w: %w", storage.ErrNotFound, err)
	}
	if err := storage.CheckAPIKeyFormat(key); err != nil {
		return storage.APIKey{}, fmt.Errorf("create api key for tenant %s: malformed key", tenantID)
	}
	hash := storage.HashAPIKey(key)
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tenants[tenantID]
	if !ok {
		return storage.APIKey{}, fmt.Errorf("create api key for tenant %s: %w", tenantID, storage.ErrNotFound)
	}
	if t.Status == tenantctx.StatusDeleting {
		return storage.APIKey{}, fmt.Errorf("create api key for tenant %s (%s): %w", tenantID, t.Status, storage.ErrTenantDeleting)
	}
	if _, taken := m.keys[hash]; taken {
		return storage.APIKey{}, fmt.Errorf("create api key for tenant %s: %w (key_hash)", tenantID, storage.ErrConflict)
	}
	m.keySeq++
	k := storage.APIKey{ID: m.keySeq, TenantID: tenantID, Prefix: storage.APIKeyDisplayPrefix(key), CreatedAt: m.now()}
	m.keys[hash] = memoryKey{hash: hash, APIKey: k}
	return copyKey(k), nil
}

// WithdrawAPIKey revokes key if it is stored, and otherwise stores it
// revoked, so that it can never be stored valid; it returns the key's
// record. storage.ErrNotFound for an unknown tenant or another tenant's
// key.
func (m *Catalog) WithdrawAPIKey(_ context.Context, tenantID, key string) (storage.APIKey, error) {
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return storage.APIKey{}, fmt.Errorf("withdraw api key: %w: %w", storage.ErrNotFound, err)
	}
	if err := storage.CheckAPIKeyFormat(key); err != nil {
		return storage.APIKey{}, fmt.Errorf("withdraw api key of tenant %s: malformed key", tenantID)
	}
	hash := storage.HashAPIKey(key)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.tenants[tenantID]; !ok {
		return storage.APIKey{}, fmt.Errorf("withdraw api key of tenant %s: %w", tenantID, storage.ErrNotFound)
	}
	k, ok := m.keys[hash]
	if !ok {
		m.keySeq++
		k = memoryKey{hash: hash, APIKey: storage.APIKey{ID: m.keySeq, TenantID: tenantID, Prefix: storage.APIKeyDisplayPrefix(key), CreatedAt: m.now()}}
	}
	if k.TenantID != tenantID {
		return storage.APIKey{}, fmt.Errorf("withdraw api key of tenant %s: %w", tenantID, storage.ErrNotFound)
	}
	if k.RevokedAt == nil {
		now := m.now()
		k.RevokedAt = &now
	}
	m.keys[hash] = k
	return copyKey(k.APIKey), nil
}

// ListAPIKeys returns the tenant's keys, revoked ones included, oldest
// first: every unrevoked key, then the newest revoked ones,
// storage.MaxAPIKeysListed keys in all unless more are unrevoked.
func (m *Catalog) ListAPIKeys(_ context.Context, tenantID string) ([]storage.APIKey, error) {
	m.mu.RLock()
	out := []storage.APIKey{}
	for _, k := range m.keys {
		if k.TenantID == tenantID {
			out = append(out, copyKey(k.APIKey))
		}
	}
	m.mu.RUnlock()
	// Unrevoked keys first, then the newest: what is kept under the bound.
	slices.SortFunc(out, func(a, b storage.APIKey) int {
		return cmp.Or(cmp.Compare(boolRank(a.RevokedAt == nil), boolRank(b.RevokedAt == nil)), cmp.Compare(b.ID, a.ID))
	})
	unrevoked := 0
	for _, k := range out {
		if k.RevokedAt == nil {
			unrevoked++
		}
	}
	if n := max(storage.MaxAPIKeysListed, unrevoked); len(out) > n {
		out = out[:n]
	}
	slices.SortFunc(out, func(a, b storage.APIKey) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// RevokeAPIKey revokes one key of the tenant and reports whether this call
// revoked it; storage.ErrNotFound when the tenant has no key with that id.
func (m *Catalog) RevokeAPIKey(_ context.Context, tenantID string, keyID int64) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for hash, k := range m.keys {
		if k.ID != keyID || k.TenantID != tenantID {
			continue
		}
		if k.RevokedAt != nil {
			return false, nil
		}
		now := m.now()
		k.RevokedAt = &now
		m.keys[hash] = k
		return true, nil
	}
	return false, fmt.Errorf("revoke api key %d of tenant %.64q: %w", keyID, tenantID, storage.ErrNotFound)
}

// RecordAPIKeyUse sets the last use of the keys named by their hashes,
// never moving it backwards.
func (m *Catalog) RecordAPIKeyUse(_ context.Context, uses map[string]time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for hash, at := range uses {
		k, ok := m.keys[hash]
		if !ok || (k.LastUsedAt != nil && !k.LastUsedAt.Before(at)) {
			continue
		}
		at := at.UTC().Truncate(time.Microsecond)
		k.LastUsedAt = &at
		m.keys[hash] = k
	}
	return nil
}

// copyKey returns k with its own copies of the time pointers.
func copyKey(k storage.APIKey) storage.APIKey {
	if k.LastUsedAt != nil {
		t := *k.LastUsedAt
		k.LastUsedAt = &t
	}
	if k.RevokedAt != nil {
		t := *k.RevokedAt
		k.RevokedAt = &t
	}
	return k
}

// boolRank orders true before false.
func boolRank(b bool) int {
	if b {
		return 0
	}
	return 1
}
