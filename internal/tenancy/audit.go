package tenancy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/invoicing/tenantworker/storage"
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
	// ActionKeyRevoked: an API key was revoked {slug, key_id, prefix};
	// written once per key.
	ActionKeyRevoked Action = "tenant.key_revoked"
	// ActionDeletionRequested: an operator asked for the tenant's erasure
	// {slug, from, task_id}; written once per tenant.
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
