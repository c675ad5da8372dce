package tenancy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// Action is what an audit entry records.
type Action string

// The audit actions of the lifecycle.
const (
	// ActionProvisioned: a tenant was created {slug, plan}.
	ActionProvisioned Action = "tenant.provisioned"
	// ActionProvisionAborted: a provisioning failed after the catalog row
	// was created; the row and its key were deleted again {slug}.
	ActionProvisionAborted Action = "tenant.provision_aborted"
	// ActionMigrated: a migration changed the tenant's schema
	// {schema, created, from, to, applied}.
	ActionMigrated Action = "tenant.migrated"
	// ActionStatusChanged: the tenant's status changed {from, to}.
	ActionStatusChanged Action = "tenant.status_changed"
	// ActionKeyIssued: a new API key was issued {slug, key_id, prefix}; the
	// key is never recorded.
	ActionKeyIssued Action = "tenant.key_issued"
	// ActionKeyIssueAborted: an issuance failed with its outcome unknown
	// (the catalog's answer was lost); the key, never shown, was withdrawn:
	// revoked if it was stored, else stored revoked so that it never is
	// valid {slug, key_id, prefix}.
	ActionKeyIssueAborted Action = "tenant.key_issue_aborted"
	// ActionKeyRevoked: an API key was revoked {slug, key_id, prefix};
	// written once per key.
	ActionKeyRevoked Action = "tenant.key_revoked"
	// ActionDeletionRequested: an operator asked for the tenant's erasure
	// {slug, from, task_id, discarded}; written once per tenant.
	ActionDeletionRequested Action = "tenant.deletion_requested"
	// ActionDeletionCompleted: the erasure finished {slug, schema,
	// removed}; written once per tenant.
	ActionDeletionCompleted Action = "tenant.deletion_completed"
)

// Actors of the audit entries the binaries write.
const (
	ActorAdmin  = "admin"
	ActorWorker = "worker"
)

// audit appends one entry to the audit log.
func (s *Service) audit(ctx context.Context, tenantID, actor string, action Action, detail any) error {
	e, err := auditEntry(tenantID, actor, action, detail)
	if err != nil {
		return err
	}
	if err := s.catalog.AppendAudit(ctx, e); err != nil {
		return fmt.Errorf("audit %s of tenant %s: %w", action, tenantID, err)
	}
	return nil
}

// auditOnce appends the entry unless the tenant's audit log already holds
// one of the same action; of concurrent calls, one appends
// (storage.AuditLog.AppendAuditOnce).
func (s *Service) auditOnce(ctx context.Context, tenantID, actor string, action Action, detail any) error {
	e, err := auditEntry(tenantID, actor, action, detail)
	if err != nil {
		return err
	}
	if _, err := s.catalog.AppendAuditOnce(ctx, e); err != nil {
		return fmt.Errorf("audit %s of tenant %s: %w", action, tenantID, err)
	}
	return nil
}

// auditUnlessLatest appends the entry unless, of the tenant's entries of
// the same action whose detail contains among (all of them when nil), the
// latest has a detail containing match
// (storage.AuditLog.AppendAuditUnlessLatest).
func (s *Service) auditUnlessLatest(ctx context.Context, tenantID, actor string, action Action, detail, among, match any) error {
	e, err := auditEntry(tenantID, actor, action, detail)
	if err != nil {
		return err
	}
	var cond [2]json.RawMessage
	for i, v := range []any{among, match} {
		if v == nil {
			continue
		}
		if cond[i], err = json.Marshal(v); err != nil {
			return fmt.Errorf("audit %s: %w", action, err)
		}
	}
	if _, err := s.catalog.AppendAuditUnlessLatest(ctx, e, cond[0], cond[1]); err != nil {
		return fmt.Errorf("audit %s of tenant %s: %w", action, tenantID, err)
	}
	return nil
}

// recordStatusChange records the tenant's change from `from` to `to`
// unless its latest ActionStatusChanged entry is that change already, so
// that a change whose recording more than one call may attempt (a lost
// answer, racing calls) is recorded once.
func (s *Service) recordStatusChange(ctx context.Context, id, actor string, from, to tenantctx.Status) error {
	detail := map[string]string{"from": string(from), "to": string(to)}
	return s.auditUnlessLatest(ctx, id, actor, ActionStatusChanged, detail, nil, detail)
}

// recordStatusReached records the tenant's change from `from` to `to`
// unless its latest ActionStatusChanged entry already ends at `to`: for a
// call that finds the tenant in status `to` without having changed it
// (it may be the retry of a call whose change committed but whose answer
// was lost, which recorded nothing). An active tenant without any such
// entry gets its activation recorded instead (recordActivation): that is
// the change it has not recorded.
func (s *Service) recordStatusReached(ctx context.Context, id, actor string, from, to tenantctx.Status) error {
	if to == tenantctx.StatusActive {
		if err := s.recordActivation(ctx, id, actor); err != nil {
			return err
		}
	}
	detail := map[string]string{"from": string(from), "to": string(to)}
	return s.auditUnlessLatest(ctx, id, actor, ActionStatusChanged, detail, nil, map[string]string{"to": string(to)})
}

// RecordActivation records the tenant's activation (provisioning to
// active), its first ActionStatusChanged entry, unless it has one: a
// tenant becomes active before any other status change is recorded. The
// worker calls it when a retried tenant:migrate finds its tenant active:
// the failed attempt's activation may have committed with its answer
// lost, recording nothing. A first run does not (a later migration of a
// tenant activated long ago costs no audit query, and one created before
// the audit log gets no entry dated today).
func (s *Service) RecordActivation(ctx context.Context, id, actor string) error {
	return s.recordActivation(ctx, id, actor)
}

// recordActivation is RecordActivation.
func (s *Service) recordActivation(ctx context.Context, id, actor string) error {
	return s.auditOnce(ctx, id, actor, ActionStatusChanged, activationDetail)
}

// recordOwnActivation records the activation the caller saved unless the
// tenant's audit log holds an activation already (recorded by a racing
// call of recordActivation): unlike recordActivation, an entry of a later
// status change (an operator's suspension landing between the activation
// and its entry) does not stand in for it.
func (s *Service) recordOwnActivation(ctx context.Context, id, actor string) error {
	return s.auditUnlessLatest(ctx, id, actor, ActionStatusChanged, activationDetail, activationDetail, nil)
}

// activationDetail is the detail of a tenant's activation entry.
var activationDetail = map[string]string{"from": string(tenantctx.StatusProvisioning), "to": string(tenantctx.StatusActive)}

// auditEntry makes the entry, its detail encoded as JSON.
func auditEntry(tenantID, actor string, action Action, detail any) (storage.AuditEntry, error) {
	data, err := json.Marshal(detail)
	if err != nil {
		return storage.AuditEntry{}, fmt.Errorf("audit %s: %w", action, err)
	}
	return storage.AuditEntry{TenantID: tenantID, Actor: actor, Action: string(action), Detail: data}, nil
}

// logFailure logs an audit failure after a change that has already
// happened: the caller's answer is about the change, not about its record.
func (s *Service) logFailure(ctx context.Context, tenantID string, action Action, err error) {
	if err != nil {
		s.logger.ErrorContext(ctx, "append audit entry", slog.String("tenant_id", tenantID),
			slog.String("action", string(action)), slog.String("error", err.Error()))
	}
}
