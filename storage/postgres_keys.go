package storage

import (
	"context"
	"crypto/subtle"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/invoicing/tenantworker/tenantctx"
)

// CreateAPIKey stores the hash of a new key for the tenant and returns the
// key; ErrNotFound when the tenant does not exist.
func (p *Postgres) CreateAPIKey(ctx context.Context, tenantID string) (string, error) {
	_, key, err := p.IssueAPIKey(ctx, tenantID)
	return key, err
}

// IssueAPIKey stores the hash and display prefix of a new key for the
// tenant and returns its record and the key; ErrNotFound when the tenant
// does not exist, ErrTenantDeleting when it is being deleted. See
// issueAPIKeySQL for how it takes turns with a deletion.
func (p *Postgres) IssueAPIKey(ctx context.Context, tenantID string) (APIKey, string, error) {
	key, _ := NewAPIKey()
	k, err := p.StoreAPIKey(ctx, tenantID, key)
	if err != nil {
		return APIKey{}, "", err
	}
	return k, key, nil
}

// StoreAPIKey is IssueAPIKey with a key the caller made (NewAPIKey);
// ErrConflict when the key is stored already, withdrawn included.
func (p *Postgres) StoreAPIKey(ctx context.Context, tenantID, key string) (APIKey, error) {
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return APIKey{}, fmt.Errorf("create api key: %w: %w", ErrNotFound, err)
	}
	if err := CheckAPIKeyFormat(key); err != nil {
		return APIKey{}, fmt.Errorf("create api key for tenant %s: malformed key", tenantID)
	}
	k := APIKey{TenantID: tenantID, Prefix: APIKeyDisplayPrefix(key)}
	var (
		status    string
		id        *int64
		createdAt *time.Time
	)
	if err := p.pool.QueryRow(ctx, issueAPIKeySQL, tenantID, HashAPIKey(key), k.Prefix).Scan(&status, &id, &createdAt); err != nil {
		return APIKey{}, fmt.Errorf("create api key for tenant %s: %w", tenantID, translatePgError(err))
	}
	if id == nil || createdAt == nil {
		return APIKey{}, fmt.Errorf("create api key for tenant %s (%.40s): %w", tenantID, status, ErrTenantDeleting)
	}
	k.ID, k.CreatedAt = *id, *createdAt
	return k, nil
}

// WithdrawAPIKey makes sure key never authenticates, stored or not by a
// StoreAPIKey whose answer was lost: see withdrawAPIKeySQL.
func (p *Postgres) WithdrawAPIKey(ctx context.Context, tenantID, key string) (APIKey, error) {
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return APIKey{}, fmt.Errorf("withdraw api key: %w: %w", ErrNotFound, err)
	}
	if err := CheckAPIKeyFormat(key); err != nil {
		return APIKey{}, fmt.Errorf("withdraw api key of tenant %s: malformed key", tenantID)
	}
	var k APIKey
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, withdrawAPIKeySQL, tenantID, HashAPIKey(key), APIKeyDisplayPrefix(key)).Scan(
			&k.ID, &k.TenantID, &k.Prefix, &k.CreatedAt, &k.LastUsedAt, &k.RevokedAt)
	})
	if err != nil {
		return APIKey{}, fmt.Errorf("withdraw api key %s... of tenant %s: %w", APIKeyDisplayPrefix(key), tenantID, translatePgError(err))
	}
	return k, nil
}

// withdrawAPIKeySQL is WithdrawAPIKey's statement: $1 tenant id, $2 key
// hash, $3 display prefix. Like issueAPIKeySQL it share-locks the tenant's
// row first (the order a deletion locks in: the tenant's row, then its
// keys); then it inserts the key revoked or, when the hash is stored
// already, revokes that key if it is the tenant's. The unique key_hash
// makes it take turns with a StoreAPIKey of the same key: an INSERT not
// yet committed is waited for, and its key revoked; one that comes later
// fails on the hash. No row for an unknown tenant or another tenant's key.
// It runs at read committed whatever the catalog database's
// default_transaction_isolation: at repeatable read or serializable the
// key an INSERT it waited for committed is newer than its snapshot, and
// PostgreSQL refuses to update it (SQLSTATE 40001), which left the key
// valid.
const withdrawAPIKeySQL = `
WITH tenant AS MATERIALIZED (
	SELECT t.id
	  FROM tenancy.tenants AS t
	 WHERE t.id = $1
	   FOR SHARE OF t)
INSERT INTO tenancy.api_keys AS k (tenant_id, key_hash, prefix, revoked_at)
SELECT tenant.id, $2, $3, now() FROM tenant
    ON CONFLICT (key_hash) DO UPDATE SET revoked_at = COALESCE(k.revoked_at, now())
 WHERE k.tenant_id = $1
RETURNING k.id, k.tenant_id, k.prefix, k.created_at, k.last_used_at, k.revoked_at`

// issueAPIKeySQL is IssueAPIKey's statement: $1 tenant id, $2 key hash, $3
// display prefix. It share-locks the tenant's row (FOR SHARE) and inserts
// the key only when the tenant is not being deleted; no row when there is
// no such tenant, a row without a key when it is being deleted.
//
// The lock makes issuance and deletion take turns on the tenant's row. A
// status change to deleting (SetStatus: FOR NO KEY UPDATE) that came first
// is waited for, and the status is then read from the changed row, so no
// key is issued to a tenant whose deletion was requested; one that comes
// after waits for the key's commit. DeleteTenant locks the row FOR UPDATE
// before it locks any key: it waits for an issuance in progress, whose key
// it then locks with the others in id order, and an issuance after it
// finds no tenant. (The insert's foreign key check alone takes FOR KEY
// SHARE, which neither waits for a status change nor, before DeleteTenant
// locked the row first, kept a key out of the keys a deletion had locked:
// its cascade then deleted that key in the order of its plan, and
// deadlocked with a flush of it, RecordAPIKeyUse.)
const issueAPIKeySQL = `
WITH tenant AS MATERIALIZED (
	SELECT t.id, t.status
	  FROM tenancy.tenants AS t
	 WHERE t.id = $1
	   FOR SHARE OF t),
issued AS (
	INSERT INTO tenancy.api_keys (tenant_id, key_hash, prefix)
	SELECT tenant.id, $2, $3 FROM tenant WHERE tenant.status <> 'deleting'
	RETURNING id, created_at)
SELECT tenant.status, issued.id, issued.created_at
  FROM tenant LEFT JOIN issued ON true`

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

// ListAPIKeys returns the tenant's keys, revoked ones included, oldest
// first: every unrevoked key, then the most recently issued revoked ones,
// MaxAPIKeysListed keys in all unless more are unrevoked (the oldest
// revoked keys are left out; an unrevoked one never is).
func (p *Postgres) ListAPIKeys(ctx context.Context, tenantID string) ([]APIKey, error) {
	if tenantctx.ValidateID(tenantID) != nil {
		return []APIKey{}, nil
	}
	rows, err := p.pool.Query(ctx,
		`SELECT id, tenant_id, prefix, created_at, last_used_at, revoked_at FROM (
			SELECT id, tenant_id, prefix, created_at, last_used_at, revoked_at
			  FROM tenancy.api_keys WHERE tenant_id = $1
			 ORDER BY revoked_at IS NULL DESC, id DESC
			 LIMIT GREATEST($2::int, (SELECT count(*) FROM tenancy.api_keys WHERE tenant_id = $1 AND revoked_at IS NULL))) AS k
		 ORDER BY id`,
		tenantID, MaxAPIKeysListed)
	if err != nil {
		return nil, fmt.Errorf("list api keys of tenant %s: %w", tenantID, err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (APIKey, error) {
		var k APIKey
		err := row.Scan(&k.ID, &k.TenantID, &k.Prefix, &k.CreatedAt, &k.LastUsedAt, &k.RevokedAt)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("list api keys of tenant %s: %w", tenantID, err)
	}
	return keys, nil
}

// RevokeAPIKey revokes one key of the tenant (a revoked key keeps its
// first revocation time) and reports whether this call revoked it;
// ErrNotFound when the tenant has no such key. Of concurrent calls, the
// UPDATE of the one that waited for the other's row lock finds the key
// revoked and changes nothing. The UPDATE runs at read committed whatever
// the catalog database's default_transaction_isolation: at repeatable read
// or serializable one that waited for another write of the key (the
// enqueue services' flush of its last use, RecordAPIKeyUse) found the row
// newer than its snapshot and was refused (SQLSTATE 40001), the key still
// valid.
func (p *Postgres) RevokeAPIKey(ctx context.Context, tenantID string, keyID int64) (bool, error) {
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return false, fmt.Errorf("revoke api key %d: %w: %w", keyID, ErrNotFound, err)
	}
	var tag pgconn.CommandTag
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		var err error
		tag, err = tx.Exec(ctx,
			`UPDATE tenancy.api_keys SET revoked_at = now()
			 WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL`, keyID, tenantID)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("revoke api key %d of tenant %s: %w", keyID, tenantID, err)
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	var exists bool
	if err := p.pool.QueryRow(ctx,
		`SELECT EXISTS (SELECT FROM tenancy.api_keys WHERE id = $1 AND tenant_id = $2)`, keyID, tenantID).Scan(&exists); err != nil {
		return false, fmt.Errorf("revoke api key %d of tenant %s: %w", keyID, tenantID, err)
	}
	if !exists {
		return false, fmt.Errorf("revoke api key %d of tenant %s: %w", keyID, tenantID, ErrNotFound)
	}
	return false, nil
}

// RevokeAPIKeys revokes every unrevoked key of the tenant. A tenant with no
// keys (or no such tenant) is not an error.
//
// Like RecordAPIKeyUse, with which it runs concurrently, the statement
// first locks the keys it will change in key id order, then updates them:
// see revokeAPIKeysSQL. It runs at read committed, as RevokeAPIKey does.
func (p *Postgres) RevokeAPIKeys(ctx context.Context, tenantID string) error {
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, revokeAPIKeysSQL, tenantID)
		return err
	})
	if err != nil {
		return fmt.Errorf("revoke api keys of tenant %.64q: %w", tenantID, err)
	}
	return nil
}

// revokeAPIKeysSQL is RevokeAPIKeys' statement: the keys of tenant $1 not
// yet revoked are locked in id order (a MATERIALIZED CTE, as in
// recordAPIKeyUseSQL), then revoked; a key revoked meanwhile by another
// statement keeps its revocation time. Without the ordered lock the update
// locked the keys in the order of its plan (the table's or the index's,
// not the ids'), and deadlocked (40P01) with a flush of overlapping keys.
const revokeAPIKeysSQL = `
WITH locked AS MATERIALIZED (
	SELECT k.id
	  FROM tenancy.api_keys AS k
	 WHERE k.tenant_id = $1 AND k.revoked_at IS NULL
	 ORDER BY k.id
	   FOR NO KEY UPDATE OF k)
UPDATE tenancy.api_keys AS k SET revoked_at = now()
  FROM locked AS l
 WHERE k.id = l.id AND k.revoked_at IS NULL`

// RecordAPIKeyUse writes the last use of many keys in one statement,
// never moving a key's last use backwards.
//
// Replicas flush overlapping keys at the same time, so the statement first
// locks the rows it will change in key id order (FOR NO KEY UPDATE above a
// sort: PostgreSQL takes the locks in the sorted order) and only then
// updates them: two flushes wait for each other instead of deadlocking,
// whatever order the map yields and whatever plan the update gets. A key
// whose recorded use is already as late is neither locked nor written.
// The statement runs at read committed whatever the catalog database's
// default_transaction_isolation: at repeatable read or serializable a
// flush that waited for another write of a key (another replica's flush,
// a revocation) found the row newer than its snapshot and was refused
// (SQLSTATE 40001), losing the last use of every key in it.
func (p *Postgres) RecordAPIKeyUse(ctx context.Context, uses map[string]time.Time) error {
	if len(uses) == 0 {
		return nil
	}
	hashes := make([]string, 0, len(uses))
	times := make([]time.Time, 0, len(uses))
	for h, at := range uses {
		hashes = append(hashes, h)
		times = append(times, at)
	}
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, recordAPIKeyUseSQL, hashes, times)
		return err
	})
	if err != nil {
		return fmt.Errorf("record use of %d api keys: %w", len(uses), err)
	}
	return nil
}

// recordAPIKeyUseSQL is RecordAPIKeyUse's statement. The locking CTE is
// MATERIALIZED so that it runs as written (sort, then lock), not folded
// into the update's join; a row changed by a concurrent flush while this
// one waited for it is re-checked against the newer time, and the update
// re-checks the condition on the row it locked.
const recordAPIKeyUseSQL = `
WITH locked AS MATERIALIZED (
	SELECT k.id, u.at
	  FROM tenancy.api_keys AS k
	  JOIN unnest($1::text[], $2::timestamptz[]) AS u(hash, at) ON k.key_hash = u.hash
	 WHERE k.last_used_at IS NULL OR k.last_used_at < u.at
	 ORDER BY k.id
	   FOR NO KEY UPDATE OF k)
UPDATE tenancy.api_keys AS k SET last_used_at = l.at
  FROM locked AS l
 WHERE k.id = l.id AND (k.last_used_at IS NULL OR k.last_used_at < l.at)`
