// Package tenancy is the tenant lifecycle: provisioning, schema
// migration of one tenant or all of them, suspend and resume, deletion
// (requested, then completed by tenant:destroy), API keys, and the typed
// audit actions each step writes. The HTTP API, the operator CLI, the dev
// stack, the bench and the worker's tenant:migrate and tenant:destroy
// handlers all go through a Service; none of them writes a status, an
// audit entry or a key itself.
//
// Which status may do what is not decided here but by the one status
// policy, tenantctx.Status.Decide. The package speaks neither HTTP nor
// asynq: its refusals are ErrRefused and ErrNotReady, which each adapter
// turns into its own answer (404/409, an archived or a waiting task).
//
// Audit entries hold no personal data (ids, slugs, statuses, counts) and
// outlive the tenant. A deletion leaves exactly two of them: deletion
// requested (who, when, from which status) and deletion completed (when,
// what was removed); see docs/architecture.md.
//
// Once a change is saved in the catalog, what completes it (its audit
// entry, the holds, drains and releases of the tenant's backlog, the
// tenant:destroy of a deletion) runs detached from the caller's
// cancellation, for up to 30 s: an HTTP client that disconnects as its
// change is saved does not leave it half done. Past the caller's deadline
// it goes on without the caller (ErrStillCompleting), and so do the
// catalog cache's invalidation of a saved change
// (storage.ErrInvalidationPending), the clean-up of a provisioning that
// failed and the withdrawal of the key of an issuance whose outcome is
// unknown (ErrKeyBeingWithdrawn); Service.Wait waits for them.
package tenancy
