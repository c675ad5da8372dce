package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/invoicing/tenantworker/tenantctx"
)

// IssueAPIKey creates a key in the backend, then drops any cached "not
// found" for it. That drop is best effort: a new key is random, so no
// instance can have cached it as unknown.
func (c *Cache) IssueAPIKey(ctx context.Context, tenantID string) (APIKey, string, error) {
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return APIKey{}, "", fmt.Errorf("create api key: %w: %w", ErrNotFound, err)
	}
	k, key, err := c.backend.IssueAPIKey(ctx, tenantID)
	if err != nil {
		return APIKey{}, "", err
	}
	_ = c.invalidate(ctx, []string{cacheKindAPIKey + HashAPIKey(key)}, "") // logged; see above
	return k, key, nil
}

// StoreAPIKey is IssueAPIKey with a key the caller made: it stores the
// key in the backend, then drops any cached "not found" for it (best
// effort, as for IssueAPIKey).
func (c *Cache) StoreAPIKey(ctx context.Context, tenantID, key string) (APIKey, error) {
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return APIKey{}, fmt.Errorf("create api key: %w: %w", ErrNotFound, err)
	}
	k, err := c.backend.StoreAPIKey(ctx, tenantID, key)
	if err != nil {
		return APIKey{}, err
	}
	_ = c.invalidate(ctx, []string{cacheKindAPIKey + HashAPIKey(key)}, "") // logged; see IssueAPIKey
	return k, nil
}

// WithdrawAPIKey withdraws the key in the backend, then drops it, and
// every cached key of the tenant, in every layer and instance, as
// RevokeAPIKey does; when that invalidation fails, the error wraps
// ErrInvalidationFailed (the key is withdrawn in the backend).
func (c *Cache) WithdrawAPIKey(ctx context.Context, tenantID, key string) (APIKey, error) {
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return APIKey{}, fmt.Errorf("withdraw api key: %w: %w", ErrNotFound, err)
	}
	k, err := c.backend.WithdrawAPIKey(ctx, tenantID, key)
	if err != nil && unchanged(err) {
		return k, err
	}
	if ierr := c.invalidate(ctx, []string{cacheKindAPIKey + HashAPIKey(key)}, tenantID); ierr != nil && err == nil {
		return k, fmt.Errorf("withdraw api key %d of tenant %s: %w", k.ID, tenantID, ierr)
	}
	return k, err
}

// ListAPIKeys passes through to the backend.
func (c *Cache) ListAPIKeys(ctx context.Context, tenantID string) ([]APIKey, error) {
	return c.backend.ListAPIKeys(ctx, tenantID)
}

// RecordAPIKeyUse passes through to the backend: the last use is not
// cached.
func (c *Cache) RecordAPIKeyUse(ctx context.Context, uses map[string]time.Time) error {
	return c.backend.RecordAPIKeyUse(ctx, uses)
}

// RevokeAPIKey revokes one key in the backend, then drops every cached key
// of the tenant (the cache knows keys only by their hashes, which the
// backend does not hand out) in Redis, in this instance and, through the
// invalidation message, in every other instance: a revoked key fails at
// once here and as soon as the others receive the message (within their
// LocalTTL if they miss it). When the invalidation cannot be applied in
// Redis or published, the error wraps ErrInvalidationFailed: the key is
// revoked in the backend, but other instances may accept it until their
// Redis entry expires (RedisTTL), so the caller must not report success.
//
// It reports whether this call revoked the key (the backend's answer); a
// key revoked already is invalidated again all the same, so that a retry
// after ErrInvalidationFailed publishes it.
func (c *Cache) RevokeAPIKey(ctx context.Context, tenantID string, keyID int64) (bool, error) {
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return false, fmt.Errorf("revoke api key %d: %w: %w", keyID, ErrNotFound, err)
	}
	revoked, err := c.backend.RevokeAPIKey(ctx, tenantID, keyID)
	if err != nil && unchanged(err) {
		return revoked, err
	}
	if ierr := c.invalidate(ctx, nil, tenantID); ierr != nil && err == nil {
		return revoked, fmt.Errorf("revoke api key %d of tenant %s: %w", keyID, tenantID, ierr)
	}
	return revoked, err
}
