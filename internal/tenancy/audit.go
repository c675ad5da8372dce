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
	data, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	e := storage.AuditEntry{TenantID: tenantID, Actor: actor, Action: string(action), Detail: data}
	if err := s.catalog.AppendAudit(ctx, e); err != nil {
		return fmt.Errorf("audit %s of tenant %s: %w", action, tenantID, err)
	}
	return nil
}

// auditOnce appends the entry unless the tenant's audit log already holds
// one with this action (a rerun of an idempotent step).
func (s *Service) auditOnce(ctx context.Context, tenantID, actor string, action Action, detail any) error {
	entries, err := s.catalog.AuditEntries(ctx, tenantID)
	if err != nil {
		return fmt.Errorf("read audit log of tenant %s: %w", tenantID, err)
	}
	for _, e := range entries {
		if e.Action == string(action) {
			return nil
		}
	}
	return s.audit(ctx, tenantID, actor, action, detail)
}

// logFailure logs an audit failure after a change that has already
// happened: the caller's answer is about the change, not about its record.
func (s *Service) logFailure(ctx context.Context, tenantID string, action Action, err error) {
	if err != nil {
		s.logger.ErrorContext(ctx, "append audit entry", slog.String("tenant_id", tenantID),
			slog.String("action", string(action)), slog.String("error", err.Error()))
	}
}
