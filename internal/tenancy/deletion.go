package tenancy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// Deletion is a requested erasure.
type Deletion struct {
	// Tenant is the catalog row, status deleting.
	Tenant tenantctx.Tenant
	// TaskID is the tenant:destroy task that erases it.
	TaskID string
}

// RequestDeletion marks the tenant deleting at once (its routes answer 404
// and its queued tasks are archived from then on), discards its backlog
// with fair dispatch (tasks that have not started: there is no tenant to
// run them for) and lifts its holds so the destroy can run, records
// ActionDeletionRequested {slug, from, task_id, discarded} and enqueues
// tenant:destroy,
// which erases schema, documents, keys and catalog row (Destroy). Asking
// again for a tenant being deleted enqueues the destroy again (one per
// tenant) and writes no second request entry; one that races the request
// that marked the tenant (from another service) leaves the entry to it, so
// that it says the status the tenant came from (deletionRecorded).
//
// A marking whose answer was lost (the connection to PostgreSQL lost at
// its commit) is read back: found saved, the request completes as above,
// recording the status the tenant came from; not found saved (or not
// read), it fails, and asking again completes it.
//
// Errors: storage.ErrNotFound for an unknown id, storage.ErrInvalidTransition
// when the lifecycle forbids it; storage.ErrInvalidationFailed (with the
// Deletion filled in) when the tenant was marked deleting and its destroy
// enqueued but the cache invalidation could not be published.
func (s *Service) RequestDeletion(ctx context.Context, id, actor string) (Deletion, error) {
	t, err := s.catalog.TenantByID(ctx, id)
	if err != nil {
		return Deletion{}, fmt.Errorf("request deletion: %w", err)
	}
	// From the status read, so that the request records the status the
	// tenant really was deleted from: one changed since the read (by
	// another service) is read again.
	prev := t.Status
	for attempt := 1; ; attempt++ {
		var cur tenantctx.Tenant
		cur, err = s.catalog.SetStatusFrom(ctx, id, prev, tenantctx.StatusDeleting)
		if !errors.Is(err, storage.ErrStatusChanged) || attempt == statusAttempts || !cur.Status.Valid() {
			t = cur
			break
		}
		prev = cur.Status
	}
	if err != nil && !errors.Is(err, storage.ErrInvalidationFailed) && outcomeUnknown(err) {
		// The answer was lost (the connection to PostgreSQL lost at the
		// commit, or ctx ended while it ran): the marking may be saved,
		// and the tenant would stay deleting, its work refused and its
		// data kept, with no destroy queued. Found deleting, it is
		// completed as a saved one, recorded as from the status read.
		rctx, cancel := completing(ctx)
		cur, rerr := s.catalog.TenantByID(rctx, id)
		cancel()
		if rerr == nil && cur.Status == tenantctx.StatusDeleting {
			t, err = cur, nil
		}
	}
	// Marked deleting but not propagated (storage.ErrInvalidationFailed):
	// the deletion goes on and the error is returned at the end, because
	// other processes may still serve the tenant (docs/architecture.md, P18).
	notPropagated := err
	if err != nil && !errors.Is(err, storage.ErrInvalidationFailed) {
		return Deletion{}, fmt.Errorf("request deletion of tenant %s: %w", id, err)
	}
	// Marked deleting: the drain, the record and the destroy must follow,
	// or the tenant stays deleting with its data and no destroy queued.
	p := tasks.TenantDestroy{TenantID: id}
	var taskID string
	cerr := s.complete(ctx, id, "request deletion: drain, record, enqueue the destroy", func(ctx context.Context) error {
		var err error
		taskID, err = s.completeDeletion(ctx, t, prev, p, actor)
		return err
	})
	switch {
	case errors.Is(cerr, ErrStillCompleting):
		// The destroy's task id is the tenant's: the one being enqueued.
		// With the change's own error, if it was not propagated: other
		// processes may still serve the tenant, and a retry publishes the
		// invalidation again.
		return Deletion{Tenant: t, TaskID: p.Spec().TaskID}, fmt.Errorf("request deletion of tenant %s: %w", id, errors.Join(notPropagated, cerr))
	case cerr != nil:
		return Deletion{Tenant: t}, cerr
	case notPropagated != nil:
		return Deletion{Tenant: t, TaskID: taskID}, fmt.Errorf("request deletion of tenant %s: %w", id, notPropagated)
	}
	return Deletion{Tenant: t, TaskID: taskID}, nil
}

// completeDeletion completes the deletion request of t, marked deleting
// from prev: discards its backlog and lifts its holds (fair dispatch),
// records the request and enqueues p, its tenant:destroy, whose task id it
// returns.
func (s *Service) completeDeletion(ctx context.Context, t tenantctx.Tenant, prev tenantctx.Status, p tasks.TenantDestroy, actor string) (string, error) {
	id := t.ID
	// The request is recorded before the destroy can run, so the two
	// entries are in order; the task id is the destroy's deterministic one.
	// It is recorded also when what follows fails: a retry finds the
	// tenant deleting already and could no longer say where it came from.
	record := func(discarded any) {
		if prev == tenantctx.StatusDeleting && s.deletionRecorded(ctx, id) {
			// Found deleting: the request that marked it recorded it,
			// with the status it really came from.
			return
		}
		detail := map[string]any{"slug": t.Slug, "from": string(prev), "task_id": p.Spec().TaskID, "discarded": discarded}
		s.logFailure(ctx, id, ActionDeletionRequested, s.auditOnce(ctx, id, actor, ActionDeletionRequested, detail))
	}
	var discarded int
	if s.fair != nil {
		drained, err := s.fair.Drain(ctx, id, s.layout().Queues()...)
		if err != nil {
			record(nil)
			return "", fmt.Errorf("request deletion of tenant %s: discard its backlog: %w", id, err)
		}
		discarded = drained.Total()
		for _, r := range []fair.Reason{fair.Suspended, fair.Paused, fair.Moving} {
			if _, err := s.fair.Release(ctx, id, r, s.holdQueues(id)...); err != nil {
				record(discarded)
				return "", fmt.Errorf("request deletion of tenant %s: lift its holds: %w", id, err)
			}
		}
		if err := s.catalog.SetQueuePaused(ctx, id, false); err != nil {
			record(discarded)
			return "", fmt.Errorf("request deletion of tenant %s: clear its pause's record: %w", id, err)
		}
	}
	record(discarded)
	res, err := s.enqueuer.Enqueue(ctx, p)
	if err != nil {
		return "", fmt.Errorf("request deletion of tenant %s: %w", id, err)
	}
	return res.Info.ID, nil
}

// deletionRecordWait bounds how long a deletion request that found its
// tenant deleting already waits for the request that marked it to record
// itself (deletionRecorded).
const deletionRecordWait = 5 * time.Second

// deletionRecorded reports whether tenant id's audit log holds its
// ActionDeletionRequested, waiting for it up to deletionRecordWait: a
// request that found the tenant deleting already (prev deleting) may race
// the one that marked it (from another service), which records the status
// the tenant came from once it discarded the backlog. Recorded first, the
// later request's entry would say "deleting" and, written once, stay. A
// request that marked it and failed records it all the same (completeDeletion),
// so only one cut off before that (its process killed) leaves none: the
// caller then records it with what it knows. A failed read is no entry.
func (s *Service) deletionRecorded(ctx context.Context, id string) bool {
	deadline := time.Now().Add(deletionRecordWait)
	for {
		entries, err := s.catalog.AuditEntries(ctx, id)
		if err == nil && slices.ContainsFunc(entries, func(e storage.AuditEntry) bool {
			return e.Action == string(ActionDeletionRequested)
		}) {
			return true
		}
		if err != nil || time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(deletionRecordPoll):
		}
	}
}

// deletionRecordPoll is how often deletionRecorded reads the audit log.
const deletionRecordPoll = 20 * time.Millisecond

// Erasure is what Destroy removed: the task result of tenant:destroy and
// the detail of ActionDeletionCompleted. It holds no personal data.
type Erasure struct {
	Slug    string   `json:"slug"`
	Schema  string   `json:"schema"`
	Removed []string `json:"removed"`
}

// What Destroy removes, in order.
var erased = []string{"schema", "documents", "api_keys", "catalog_row"}

// Destroy erases t, a tenant marked deleting, in order: its schema
// (schema.DropOwned: idempotent, and never another tenant's schema of the
// same name), its documents, its API keys, what Redis keeps of it (the
// fair dispatcher's state, the records of its archived tasks); then it
// records ActionDeletionCompleted and deletes the catalog row; last, it
// removes from Redis again what a task archived meanwhile may have left,
// where a failure is only logged.
//
// Every step tolerates having been done before, so it is safe to run twice
// and after a partial run. The entry and the Redis state go before the row
// does: once the row is gone a further run of the task (the retry of a
// run whose answer was lost at the delete's commit, or which was killed
// right after it) finds no tenant and only finishes the erasure
// (FinishErased: the Redis pass again, the entry read back); a rerun finds
// the entry and does not write a second one.
//
// Errors: ErrNotReady for a tenant not marked deleting (a live tenant is
// never erased, whatever the caller checked before), ErrRefused for any
// other status the policy refuses.
func (s *Service) Destroy(ctx context.Context, t tenantctx.Tenant, actor string) (Erasure, error) {
	if err := allowed(t, tenantctx.Destruction); err != nil {
		return Erasure{}, fmt.Errorf("destroy tenant %s: %w", t.ID, err)
	}
	pool, err := s.schemaPool(ctx, t)
	if err != nil {
		return Erasure{}, fmt.Errorf("destroy tenant %s: %w", t.ID, err)
	}
	// Only its own schema: a destroy run again after the slug was given to
	// a new tenant (whose schema has the same name) leaves that one alone.
	if _, err := schema.DropOwned(ctx, pool, t.Schema, t.ID); err != nil {
		return Erasure{}, fmt.Errorf("destroy tenant %s: %w", t.ID, err)
	}
	if err := s.dropMoveCopies(ctx, t); err != nil {
		return Erasure{}, fmt.Errorf("destroy tenant %s: %w", t.ID, err)
	}
	if err := s.documents.DeleteTenant(ctx, t.ID); err != nil {
		return Erasure{}, fmt.Errorf("destroy tenant %s: delete documents: %w", t.ID, err)
	}
	if err := s.catalog.RevokeAPIKeys(ctx, t.ID); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return Erasure{}, fmt.Errorf("destroy tenant %s: revoke api keys: %w", t.ID, err)
	}
	// Before the row: a run cut off after the row's delete is not run again.
	if err := s.forgetInRedis(ctx, t.ID); err != nil {
		return Erasure{}, fmt.Errorf("destroy tenant %s: %w", t.ID, err)
	}
	done := Erasure{Slug: t.Slug, Schema: t.Schema, Removed: erased}
	if err := s.auditOnce(ctx, t.ID, actor, ActionDeletionCompleted, done); err != nil {
		return Erasure{}, err
	}
	// A row deleted whose invalidation was not propagated is only logged:
	// the tenant has been refused everywhere since it was marked deleting,
	// and a retry would find no tenant to run for.
	err = s.catalog.DeleteTenant(ctx, t.ID)
	if errors.Is(err, storage.ErrInvalidationFailed) {
		s.logger.WarnContext(ctx, "destroy tenant: catalog row deleted, cache invalidation not propagated",
			slog.String("tenant_id", t.ID), slog.String("error", err.Error()))
		err = nil
	}
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return Erasure{}, fmt.Errorf("destroy tenant %s: delete catalog row: %w", t.ID, err)
	}
	// Again after it, for what a task of the tenant archived since (it
	// resolved the tenant before the delete) left behind: only logged, the
	// erasure is complete.
	if err := s.forgetInRedis(ctx, t.ID); err != nil {
		s.logger.WarnContext(ctx, "forget erased tenant in Redis", slog.String("tenant_id", t.ID), slog.String("error", err.Error()))
	}
	return done, nil
}

// dropMoveCopies drops the copies of t's schema that its moves left in
// the other databases they touched (named by t's ActionMoveStarted
// entries): a move killed between its copy and the switch leaves a whole
// copy in its target, one killed between the switch and the old schema's
// drop leaves the old schema in its source, and a move whose switch was
// not propagated, or whose outcome is unknown, keeps both. Only a schema
// that records t is dropped (schema.DropRecorded), never another tenant's
// of the same name. A database no longer registered is skipped with a
// warning: nothing reaches it from here. One the catalog still registers
// but this process cannot reach (registered without a URL, and missing
// from its TENANT_DATABASES) fails the destroy with
// placement.ErrUnknownDatabase, as the tenant's own database would: it
// may hold a copy.
func (s *Service) dropMoveCopies(ctx context.Context, t tenantctx.Tenant) error {
	if s.pools == nil {
		return nil
	}
	entries, err := s.catalog.AuditEntries(ctx, t.ID)
	if err != nil {
		return fmt.Errorf("find the databases its moves touched: %w", err)
	}
	seen := map[string]bool{t.DatabaseName(): true}
	for _, e := range entries {
		if e.Action != string(ActionMoveStarted) {
			continue
		}
		var m struct {
			From string `json:"from"`
			To   string `json:"to"`
		}
		if err := json.Unmarshal(e.Detail, &m); err != nil {
			return fmt.Errorf("read %s: %w", ActionMoveStarted, err)
		}
		for _, name := range []string{m.From, m.To} {
			if name == "" || seen[name] {
				continue
			}
			seen[name] = true
			pool, err := s.pools.SchemaPool(ctx, name)
			if errors.Is(err, placement.ErrUnknownDatabase) {
				// Unknown to this process: removed from the catalog, or
				// still registered without a URL this process has (a
				// TENANT_DATABASES entry missing here), where the copy
				// may still be. Only the first is skipped.
				registered, rerr := s.databaseRegistered(ctx, name)
				if rerr != nil {
					return fmt.Errorf("drop the copy a move left in database %s: %w (and: %w)", name, err, rerr)
				}
				if !registered {
					s.logger.WarnContext(ctx, "destroy tenant: a database its moves touched is no longer registered; drop its schema there by hand if it holds one",
						slog.String("tenant_id", t.ID), slog.String("database", name), slog.String("schema", t.Schema), slog.String("error", err.Error()))
					continue
				}
			}
			if err != nil {
				return fmt.Errorf("drop the copy a move left in database %s: %w", name, err)
			}
			dropped, err := schema.DropRecorded(ctx, pool, t.Schema, t.ID)
			if err != nil {
				return fmt.Errorf("drop the copy a move left in database %s: %w", name, err)
			}
			if dropped {
				s.logger.InfoContext(ctx, "destroy tenant: dropped the copy of its schema a move left",
					slog.String("tenant_id", t.ID), slog.String("database", name), slog.String("schema", t.Schema))
			}
		}
	}
	return nil
}

// databaseRegistered reports whether the catalog registers a tenant
// database named name.
func (s *Service) databaseRegistered(ctx context.Context, name string) (bool, error) {
	ds, err := s.catalog.Databases(ctx)
	if err != nil {
		return false, fmt.Errorf("list the registered databases: %w", err)
	}
	return slices.ContainsFunc(ds, func(d storage.Database) bool { return d.Name == name }), nil
}

// FinishErased completes a tenant:destroy of tenant id whose catalog row
// is gone: a run of Destroy deleted it and was cut off before it returned
// (its answer lost at the delete's commit, the worker killed). When the
// audit log holds the tenant's ActionDeletionCompleted (written before
// the row's delete), the erasure is complete: FinishErased removes from
// Redis again what a task archived meanwhile may have left (the final
// pass of Destroy) and returns the erasure recorded, so the task
// completes, once in effect. Otherwise (no such tenant was ever erased)
// it returns storage.ErrNotFound.
func (s *Service) FinishErased(ctx context.Context, id string) (Erasure, error) {
	entries, err := s.catalog.AuditEntries(ctx, id)
	if err != nil {
		return Erasure{}, fmt.Errorf("finish destroy of tenant %s: %w", id, err)
	}
	i := slices.IndexFunc(entries, func(e storage.AuditEntry) bool { return e.Action == string(ActionDeletionCompleted) })
	if i < 0 {
		return Erasure{}, fmt.Errorf("finish destroy of tenant %s: %w: no completed deletion recorded", id, storage.ErrNotFound)
	}
	var done Erasure
	if err := json.Unmarshal(entries[i].Detail, &done); err != nil {
		return Erasure{}, fmt.Errorf("finish destroy of tenant %s: read %s: %w", id, ActionDeletionCompleted, err)
	}
	if err := s.forgetInRedis(ctx, id); err != nil {
		return Erasure{}, fmt.Errorf("finish destroy of tenant %s: %w", id, err)
	}
	return done, nil
}

// ForgetErased removes what the fair dispatcher keeps of tenant id in
// queues (every queue of the layout when none is named) once the audit
// log records the tenant's erasure: its deletion completed
// (ActionDeletionCompleted) or its provisioning aborted
// (ActionProvisionAborted). Workers call it for a task whose tenant the
// catalog does not know: an enqueue that resolved the tenant before its
// erasure (a replica's cache lagging the deletion, a handler's follow-up,
// a sweep's fan-out) and ran after the destroy's last look at Redis gave
// the dispatcher the tenant's state again, and nothing else would remove
// it. The audit log, read from the catalog's database (never a cache),
// is what makes the forget safe: an erased tenant's id stays claimed
// (tenancy.tenant_ids), so no live tenant, one being provisioned or moved
// included, ever has such an entry, whatever a lagging cache answered.
// Idempotent; many workers may call it at once. It reports whether it
// forgot the tenant: false, doing nothing, without a dispatcher. It
// returns storage.ErrNotFound when no erasure of id is recorded (an id
// that never was a tenant's, or a catalog answer that does not hold):
// nothing is forgotten.
func (s *Service) ForgetErased(ctx context.Context, id string, queues ...string) (bool, error) {
	if s.fair == nil {
		return false, nil
	}
	entries, err := s.catalog.AuditEntries(ctx, id)
	if err != nil {
		return false, fmt.Errorf("forget erased tenant %s: %w", id, err)
	}
	if !slices.ContainsFunc(entries, func(e storage.AuditEntry) bool {
		return e.Action == string(ActionDeletionCompleted) || e.Action == string(ActionProvisionAborted)
	}) {
		return false, fmt.Errorf("forget erased tenant %s: %w: no erasure recorded", id, storage.ErrNotFound)
	}
	if len(queues) == 0 {
		queues = s.holdQueues(id)
	}
	if err := s.fair.Forget(ctx, id, queues...); err != nil {
		return false, fmt.Errorf("forget erased tenant %s: %w", id, err)
	}
	return true, nil
}

// forgetInRedis removes what Redis keeps of tenant id: what the fair
// dispatcher kept of it (a few small keys) and the records of its
// archived tasks, which nobody can read once it is erased.
func (s *Service) forgetInRedis(ctx context.Context, id string) error {
	if s.fair != nil {
		if err := s.fair.Forget(ctx, id, s.holdQueues(id)...); err != nil {
			return fmt.Errorf("forget it in the dispatcher: %w", err)
		}
	}
	if err := s.enqueuer.DeleteTaskRecords(ctx, id); err != nil {
		return fmt.Errorf("delete its task records: %w", err)
	}
	return nil
}
