package storage

import (
	"context"
	"crypto/subtle"
	"fmt"

	"github.com/invoicing/tenantworker/tenantctx"
)

// CreateAPIKey stores the hash of a new key for the tenant and returns the
// key; ErrNotFound when the tenant does not exist.
func (p *Postgres) CreateAPIKey(ctx context.Context, tenantID string) (string, error) {
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return "", fmt.Errorf("create api key: %w: %w", ErrNotFound, err)
	}
	key, hash := NewAPIKey()
	if _, err := p.pool.Exec(ctx,
		`INSERT INTO tenancy.api_keys (tenant_id, key_hash) VALUES ($1, $2)`,
		tenantID, hash); err != nil {
		return "", fmt.Errorf("create api key for tenant %s: %w", tenantID, translatePgError(err))
	}
	return key, nil
}

// TenantForAPIKey returns the id of the tenant owning an unrevoked key.
// Malformed keys are refused before any query; the stored hash is compared
// in constant time.
func (p *Postgres) TenantForAPIKey(ctx context.Context, key string) (string, error) {
	if err := CheckAPIKeyFormat(key); err != nil {
		return "", fmt.Errorf("tenant for api key: %w", err)
	}
	hash := HashAPIKey(key)
	p.queries.Add(1)
	var tenantID, stored string
	if err := p.pool.QueryRow(ctx,
		`SELECT tenant_id, key_hash FROM tenancy.api_keys
		 WHERE key_hash = $1 AND revoked_at IS NULL`, hash).Scan(&tenantID, &stored); err != nil {
		return "", fmt.Errorf("tenant for api key: %w", translatePgError(err))
	}
	if subtle.ConstantTimeCompare([]byte(stored), []byte(hash)) != 1 {
		return "", fmt.Errorf("tenant for api key: %w", ErrNotFound)
	}
	return tenantID, nil
}

// RevokeAPIKeys revokes every unrevoked key of the tenant. A tenant with no
// keys (or no such tenant) is not an error.
func (p *Postgres) RevokeAPIKeys(ctx context.Context, tenantID string) error {
	if _, err := p.pool.Exec(ctx,
		`UPDATE tenancy.api_keys SET revoked_at = now()
		 WHERE tenant_id = $1 AND revoked_at IS NULL`, tenantID); err != nil {
		return fmt.Errorf("revoke api keys of tenant %.64q: %w", tenantID, err)
	}
	return nil
}
