package tenancy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// IssueKey creates a new API key for the tenant and writes
// ActionKeyIssued {slug, key_id, prefix}; the key's plaintext exists only
// in the return value, next to its record. A tenant whose status refuses
// work (being deleted) gets none: ErrRefused, also when its deletion is
// requested while the key is being issued (the catalog refuses it,
// storage.ErrTenantDeleting). An unknown tenant is storage.ErrNotFound.
func (s *Service) IssueKey(ctx context.Context, id, actor string) (string, storage.APIKey, error) {
	t, err := s.catalog.TenantByID(ctx, id)
	if err != nil {
		return "", storage.APIKey{}, fmt.Errorf("issue api key: %w", err)
	}
	if err := refuseDeleting(t, "issue api key for"); err != nil {
		return "", storage.APIKey{}, err
	}
	k, key, err := s.catalog.IssueAPIKey(ctx, id)
	if errors.Is(err, storage.ErrTenantDeleting) {
		// The deletion was requested after the check above: the catalog
		// made no key.
		return "", storage.APIKey{}, fmt.Errorf("issue api key for tenant %s: %w: %w", id, ErrRefused, err)
	}
	if err != nil {
		return "", storage.APIKey{}, fmt.Errorf("issue api key for tenant %s: %w", id, err)
	}
	ctx, cancel := completing(ctx) // issued: check and record it
	defer cancel()
	// A deletion requested right after the key was made (the catalog
	// issues none once it is requested): the new key goes again, and the
	// answer is the refusal a later call would have given.
	now, err := s.catalog.TenantByID(ctx, id)
	if err == nil {
		err = refuseDeleting(now, "issue api key for")
	}
	if errors.Is(err, ErrRefused) || errors.Is(err, storage.ErrNotFound) {
		if _, rerr := s.catalog.RevokeAPIKey(ctx, id, k.ID); rerr != nil && !errors.Is(rerr, storage.ErrNotFound) {
			s.logger.ErrorContext(ctx, "revoke a key issued while the tenant's deletion was requested",
				slog.String("tenant_id", id), slog.Int64("key_id", k.ID), slog.String("error", rerr.Error()))
		}
		return "", storage.APIKey{}, fmt.Errorf("issue api key for tenant %s: %w: deletion requested meanwhile: %w", id, ErrRefused, err)
	}
	s.logFailure(ctx, id, ActionKeyIssued, s.audit(ctx, id, actor, ActionKeyIssued, keyDetail(t, k)))
	return key, k, nil
}

// ListKeys returns the tenant's API keys, revoked ones included, oldest
// first: ids, display prefixes and times, never a key. An unknown tenant
// is storage.ErrNotFound.
func (s *Service) ListKeys(ctx context.Context, id string) ([]storage.APIKey, error) {
	if _, err := s.catalog.TenantByID(ctx, id); err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	keys, err := s.catalog.ListAPIKeys(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("list api keys of tenant %s: %w", id, err)
	}
	return keys, nil
}

// RevokeKey revokes one API key of the tenant and writes ActionKeyRevoked
// {slug, key_id, prefix} the first time; revoking it again changes and
// records nothing, also when two calls overlap. A revocation that
// committed but whose answer was lost (the call fails) is recorded by the
// call if it can tell, else by its retry, which finds the key revoked and
// no entry of it: once, whichever records it. From its return on, the key
// is refused by this process, and by every other process as soon as the
// cache's invalidation reaches it (docs/architecture.md, P18).
//
// Errors: storage.ErrNotFound for an unknown tenant or a key id the tenant
// does not have; an error wrapping storage.ErrInvalidationFailed when the
// key is revoked but the invalidation could not be published, so other
// processes may still accept it: the caller must report a failure (the
// HTTP API answers 503), and a retry publishes again.
func (s *Service) RevokeKey(ctx context.Context, id string, keyID int64, actor string) error {
	t, err := s.catalog.TenantByID(ctx, id)
	if err != nil {
		return fmt.Errorf("revoke api key %d: %w", keyID, err)
	}
	// Which key it is, for the audit entry; the catalog is the judge of
	// whether it exists and of who revoked it.
	keys, err := s.catalog.ListAPIKeys(ctx, id)
	if err != nil {
		return fmt.Errorf("revoke api key %d of tenant %s: %w", keyID, id, err)
	}
	before := storage.APIKey{ID: keyID}
	if i := slices.IndexFunc(keys, func(k storage.APIKey) bool { return k.ID == keyID }); i >= 0 {
		before = keys[i]
	}
	revoked, err := s.catalog.RevokeAPIKey(ctx, id, keyID)
	if err != nil && !errors.Is(err, storage.ErrInvalidationFailed) {
		err = fmt.Errorf("revoke api key %d of tenant %s: %w", keyID, id, err)
		if outcomeUnknown(err) && before.RevokedAt == nil {
			// The connection was lost at the revocation's commit: it may
			// be saved. If it is, it is recorded now, else by the
			// caller's retry (below); once, whichever records it.
			ctx, cancel := completing(ctx)
			defer cancel()
			if keys, lerr := s.catalog.ListAPIKeys(ctx, id); lerr == nil &&
				slices.ContainsFunc(keys, func(k storage.APIKey) bool { return k.ID == keyID && k.RevokedAt != nil }) {
				s.logFailure(ctx, id, ActionKeyRevoked, s.recordKeyRevoked(ctx, id, actor, t, before))
			}
		}
		return err
	}
	ctx, cancel := completing(ctx) // revoked: record it
	defer cancel()
	if revoked || before.RevokedAt != nil {
		// Revoked in the catalog, propagated or not: record it. A key
		// found revoked already may have been revoked by a call whose
		// answer was lost, which recorded nothing: recorded unless the
		// key's revocation is (once, whichever call records it).
		s.logFailure(ctx, id, ActionKeyRevoked, s.recordKeyRevoked(ctx, id, actor, t, before))
	}
	if err != nil {
		return fmt.Errorf("revoke api key %d of tenant %s: %w", keyID, id, err)
	}
	return nil
}

// recordKeyRevoked records the revocation of key k unless the tenant's
// audit log holds one of it already.
func (s *Service) recordKeyRevoked(ctx context.Context, id, actor string, t tenantctx.Tenant, k storage.APIKey) error {
	return s.auditUnlessLatest(ctx, id, actor, ActionKeyRevoked, keyDetail(t, k), map[string]int64{"key_id": k.ID}, nil)
}

// keyDetail is the audit detail of a key: never the key, only which one.
func keyDetail(t tenantctx.Tenant, k storage.APIKey) map[string]any {
	return map[string]any{"slug": t.Slug, "key_id": k.ID, "prefix": k.Prefix}
}
