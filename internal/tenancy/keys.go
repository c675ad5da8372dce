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
//
// A failed call issued no key. When the catalog's answer is lost (the
// connection to PostgreSQL lost at the INSERT's commit, or ctx ended while
// it ran), the key may be stored all the same, valid, and nobody would
// ever receive it: IssueKey withdraws it (storage.KeyStore.WithdrawAPIKey:
// revoked if stored, else stored revoked so that the INSERT, should it
// still commit, fails) and records ActionKeyIssueAborted, then fails with
// the catalog's error; a retry issues a fresh key. Only if the withdrawal
// fails too does the error wrap ErrKeyLeftIssued and name the key's
// prefix: it may be valid, and an operator revokes it (RevokeKey). A
// withdrawal not ended by ctx's deadline goes on without the caller, and
// the error wraps ErrKeyBeingWithdrawn (Wait waits for it).
func (s *Service) IssueKey(ctx context.Context, id, actor string) (string, storage.APIKey, error) {
	t, err := s.catalog.TenantByID(ctx, id)
	if err != nil {
		return "", storage.APIKey{}, fmt.Errorf("issue api key: %w", err)
	}
	if err := refuseDeleting(t, "issue api key for"); err != nil {
		return "", storage.APIKey{}, err
	}
	// The key is made here, not by the catalog, so that it is known
	// should the catalog's answer be lost.
	key, _ := storage.NewAPIKey()
	k, err := s.catalog.StoreAPIKey(ctx, id, key)
	if errors.Is(err, storage.ErrTenantDeleting) {
		// The deletion was requested after the check above: the catalog
		// made no key.
		return "", storage.APIKey{}, fmt.Errorf("issue api key for tenant %s: %w: %w", id, ErrRefused, err)
	}
	if err != nil {
		err = fmt.Errorf("issue api key for tenant %s: %w", id, err)
		if outcomeUnknown(err) {
			return "", storage.APIKey{}, s.withdrawKey(ctx, t, key, actor, err)
		}
		return "", storage.APIKey{}, err
	}
	ctx, cancel := completing(ctx) // issued: check and record it
	defer cancel()
	// A deletion requested right after the key was made (the catalog
	// issues none once it is requested): the new key goes again, and the
	// answer is the refusal a later call would have given. Read from the
	// catalog itself: a deletion requested through another service is
	// not yet in this one's tenant cache, which holds the entry the check
	// above read.
	now, err := s.fresh().TenantByID(ctx, id)
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

// ErrKeyLeftIssued: an issuance failed with its outcome unknown, and so
// did the withdrawal of its key: the key, which nobody received, may be
// stored and valid. The error names its prefix; list the tenant's keys and
// revoke it.
var ErrKeyLeftIssued = errors.New("key possibly left valid")

// ErrKeyBeingWithdrawn: an issuance failed with its outcome unknown, and
// the withdrawal of its key had not ended by the caller's deadline: it goes
// on without the caller (within completeTimeout), records
// ActionKeyIssueAborted once done and logs its outcome; should it fail,
// the log names the key's prefix (ErrKeyLeftIssued). Nobody received the
// key; a retry issues a fresh one.
var ErrKeyBeingWithdrawn = errors.New("key still being withdrawn after the deadline")

// withdrawKey takes back key, whose issuance to tenant t failed with
// cause, an error that leaves its outcome unknown: the key is revoked if
// the catalog stored it, else stored revoked, and ActionKeyIssueAborted
// records it. It returns cause, saying that no key was issued or, when the
// withdrawal fails, that the key may be left valid (wrapping
// ErrKeyLeftIssued). It runs even when ctx was cancelled or its deadline
// passed (detach), but the caller waits for it only until ctx's deadline
// (an admin request's, which must answer then): past it, cause comes back
// wrapping ErrKeyBeingWithdrawn and the withdrawal goes on.
func (s *Service) withdrawKey(ctx context.Context, t tenantctx.Tenant, key, actor string, cause error) error {
	prefix := storage.APIKeyDisplayPrefix(key)
	var withdrawn string // what the withdrawal did, read once it ended
	err := s.detach(ctx, t.ID, "issue api key: withdraw the key whose issuance failed", ErrKeyBeingWithdrawn, func(ctx context.Context) error {
		k, err := s.catalog.WithdrawAPIKey(ctx, t.ID, key)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			// The tenant is gone, and its keys with it.
			withdrawn = "the tenant is gone"
			return nil
		case err != nil && !errors.Is(err, storage.ErrInvalidationFailed):
			// An invalidation that failed matters not: nobody holds the key,
			// so no process can have it cached as valid.
			s.logger.ErrorContext(ctx, "withdraw an api key whose issuance failed with its outcome unknown; revoke it",
				slog.String("tenant_id", t.ID), slog.String("prefix", prefix), slog.String("error", err.Error()))
			return fmt.Errorf("the key %s... may be stored and %w: revoke it; withdrawal: %v", prefix, ErrKeyLeftIssued, err)
		}
		s.logger.WarnContext(ctx, "api key withdrawn: its issuance failed with its outcome unknown",
			slog.String("tenant_id", t.ID), slog.Int64("key_id", k.ID), slog.String("prefix", k.Prefix))
		s.logFailure(ctx, t.ID, ActionKeyIssueAborted, s.audit(ctx, t.ID, actor, ActionKeyIssueAborted, keyDetail(t, k)))
		withdrawn = fmt.Sprintf("key %d withdrawn", k.ID)
		return nil
	})
	switch {
	case errors.Is(err, ErrKeyBeingWithdrawn):
		return fmt.Errorf("%w (the key %s... it sent is being withdrawn: %w)", cause, prefix, err)
	case err != nil:
		return fmt.Errorf("%w (%w)", cause, err)
	}
	return fmt.Errorf("%w (no key was issued: %s)", cause, withdrawn)
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
// call if it can tell (a check that goes on without the caller past its
// deadline, as complete does), else by its retry, which finds the key
// revoked and no entry of it: once, whichever records it. From its return on, the key
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
			// The connection was lost at the revocation's commit, or ctx
			// ended while it ran: it may be saved. If it is, it is
			// recorded now, else by the caller's retry (below); once,
			// whichever records it. The check goes on without the caller
			// past its deadline (complete): the catalog that did not
			// answer in time may still not answer.
			_ = s.complete(ctx, id, "revoke api key: record a revocation whose answer was lost", func(ctx context.Context) error {
				keys, lerr := s.catalog.ListAPIKeys(ctx, id)
				if lerr != nil {
					return fmt.Errorf("list the keys to see whether key %d is revoked: %w", keyID, lerr)
				}
				if slices.ContainsFunc(keys, func(k storage.APIKey) bool { return k.ID == keyID && k.RevokedAt != nil }) {
					s.logFailure(ctx, id, ActionKeyRevoked, s.recordKeyRevoked(ctx, id, actor, t, before))
				}
				return nil
			})
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
