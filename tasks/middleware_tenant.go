package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// Tenant resolves the task's tenant and decides whether the task may run
// (DESIGN.md "Tenant model"; PITFALLS P2, P5, P6). System types
// (IsSystemType) pass through without a tenant. For every other type:
//
//   - a payload that is not a JSON object, or whose tenant_id is missing,
//     null, not a string, empty or not a valid tenant id: archived at once
//     (asynq.SkipRetry) with the reason; the handler never runs;
//   - a tenant the catalog does not know (storage.ErrNotFound: deleted or
//     never existed): archived;
//   - a deleting tenant: archived, except tenant:destroy, which runs;
//   - a provisioning tenant: tenant:migrate runs, other tasks wait
//     (ErrTenantNotReady: retried later, not counted as a failure);
//   - a suspended tenant: the task waits (ErrTenantNotReady);
//   - an active tenant: the task runs, except tenant:destroy, which waits
//     until the tenant is marked deleting (a live tenant is never erased);
//   - a catalog error (database or Redis down): an ordinary error, retried;
//   - a task that fails because its tenant was deleted (or marked deleting)
//     while it ran: archived with that reason, not retried.
//
// A task that runs gets ctx = tenantctx.WithTenant(ctx, tenant). catalog is
// the cached catalog in production.
func Tenant(catalog storage.TenantStore) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			typ := t.Type()
			if IsSystemType(typ) {
				return next.ProcessTask(ctx, t)
			}
			id, err := tenantIDFromPayload(t.Payload())
			if err != nil {
				return Permanentf("%s task refused: %w", typ, err)
			}
			tenant, err := catalog.TenantByID(ctx, id)
			if errors.Is(err, storage.ErrNotFound) {
				return Permanentf("tenant %s not found (deleted or never existed)", id)
			}
			if err != nil {
				return fmt.Errorf("look up tenant %s: %w", id, err)
			}
			if err := admit(typ, tenant); err != nil {
				return err
			}
			err = next.ProcessTask(tenantctx.WithTenant(ctx, tenant), t)
			if err != nil && !IsPermanent(err) && typ != TypeTenantDestroy {
				return droppedIfDeleted(ctx, catalog, id, typ, err)
			}
			return err
		})
	}
}

// droppedIfDeleted turns the failure of a task whose tenant was deleted (or
// marked deleting) while it ran into a permanent one: its schema or files
// vanished under it, and a retry could only be archived later (PITFALLS
// P5). Any other failure, including a failed re-check, is returned as is.
func droppedIfDeleted(ctx context.Context, catalog storage.TenantStore, id, typ string, err error) error {
	cur, lerr := catalog.TenantByID(context.WithoutCancel(ctx), id)
	switch {
	case errors.Is(lerr, storage.ErrNotFound):
		return Permanentf("tenant %s was deleted while the %s task ran (%v)", id, typ, err)
	case lerr == nil && cur.Status == tenantctx.StatusDeleting:
		return Permanentf("tenant %s is being deleted: %s task dropped (%v)", id, typ, err)
	}
	return err
}

// admit decides whether a task of type typ runs for tenant, by status.
func admit(typ string, tenant tenantctx.Tenant) error {
	switch tenant.Status {
	case tenantctx.StatusActive:
		if typ == TypeTenantDestroy {
			return notReady(tenant, "tenant:destroy runs only once the tenant is marked deleting")
		}
		return nil
	case tenantctx.StatusProvisioning:
		if typ == TypeTenantMigrate {
			return nil
		}
		return notReady(tenant, "waiting for provisioning to finish")
	case tenantctx.StatusSuspended:
		// A suspended tenant's schema is still upgraded, so that it resumes
		// on the current schema version and "migrate --all --wait" finishes.
		if typ == TypeTenantMigrate {
			return nil
		}
		return notReady(tenant, "waiting for the tenant to resume")
	case tenantctx.StatusDeleting:
		if typ == TypeTenantDestroy {
			return nil
		}
		return Permanentf("tenant %s is being deleted: %s task dropped", tenant.ID, typ)
	}
	return Permanentf("tenant %s has unknown status %.40q", tenant.ID, tenant.Status)
}

func notReady(t tenantctx.Tenant, why string) error {
	return fmt.Errorf("tenant %s is %s, %s: %w", t.ID, t.Status, why, ErrTenantNotReady)
}

// tenantField is the minimal decode of a payload: only its tenant_id.
type tenantField struct {
	TenantID json.RawMessage `json:"tenant_id"`
}

// tenantIDFromPayload returns the payload's valid tenant id, or an error
// saying what is wrong with it.
func tenantIDFromPayload(payload []byte) (string, error) {
	var f tenantField
	if err := json.Unmarshal(payload, &f); err != nil {
		return "", fmt.Errorf("payload is not a JSON object: %w", err)
	}
	if len(f.TenantID) == 0 || string(f.TenantID) == "null" {
		return "", errors.New("payload has no tenant_id")
	}
	var id string
	if err := json.Unmarshal(f.TenantID, &id); err != nil {
		return "", fmt.Errorf("tenant_id is not a string: %.40s", f.TenantID)
	}
	if id == "" {
		return "", errors.New("tenant_id is empty")
	}
	if err := tenantctx.ValidateID(id); err != nil {
		return "", fmt.Errorf("bad tenant_id: %w", err)
	}
	return id, nil
}

// payloadTenantID returns the payload's tenant_id when it is a valid id.
func payloadTenantID(payload []byte) (string, bool) {
	id, err := tenantIDFromPayload(payload)
	return id, err == nil
}

// logTenantID returns the payload's tenant_id for logs: the id when it is
// valid, "" otherwise (hostile strings are not logged verbatim).
func logTenantID(payload []byte) string {
	id, _ := payloadTenantID(payload)
	return id
}
