package tenancy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// MigrationTask is one tenant:migrate enqueued by MigrateAll or
// EnqueueMigration.
type MigrationTask struct {
	TenantID string `json:"tenant_id"`
	Slug     string `json:"slug"`
	TaskID   string `json:"task_id"`
	// Existing is true when a migration of the tenant was already pending
	// and is the one reported.
	Existing bool `json:"existing"`
}

// EnqueueMigration enqueues tenant:migrate for t; one pending migration
// per tenant, so a pending one is reported instead (Existing).
func (s *Service) EnqueueMigration(ctx context.Context, t tenantctx.Tenant) (MigrationTask, error) {
	res, err := s.enqueuer.Enqueue(ctx, tasks.TenantMigrate{TenantID: t.ID})
	if err != nil {
		return MigrationTask{}, fmt.Errorf("enqueue migration of tenant %s: %w", t.ID, err)
	}
	return MigrationTask{TenantID: t.ID, Slug: t.Slug, TaskID: res.Info.ID, Existing: res.Existing}, nil
}

// MigrationsRefusedError is MigrateAll's error when waiting caps refused
// the migrations of some tenants (fair.FullError: a queue's backlogs at
// FAIR_MAX_WAITING_TOTAL, or a tenant's own at its max_waiting). The walk
// went on past them: the other tenants' migrations are enqueued, and a
// retry once there is room enqueues the rest. It unwraps to the first
// refusal.
type MigrationsRefusedError struct {
	// Refused is how many tenants' migrations were refused.
	Refused int
	// First is the first refusal.
	First error
}

func (e *MigrationsRefusedError) Error() string {
	return fmt.Sprintf("migrate all: the migrations of %d tenants refused by a waiting cap (the first: %v)", e.Refused, e.First)
}

func (e *MigrationsRefusedError) Unwrap() error { return e.First }

// MigrateAll pages through every tenant whose status does not refuse a
// migration (provisioning, active, suspended: not deleting) and enqueues
// tenant:migrate for each. A tenant erased after its page was read (the
// enqueue finds no tenant: storage.ErrNotFound) is skipped and logged, not
// an error: a deletion completing during the walk must not stop the
// migration of the tenants after it. Nor does a migration a waiting cap
// refuses: with queue shards (QUEUE_SHARDS), one full shard of the
// critical class would otherwise hold back the tenants of every other;
// the walk goes on, and ends with a *MigrationsRefusedError. Any other
// error stops it. It returns the tasks enqueued, so a caller can report
// partial progress.
func (s *Service) MigrateAll(ctx context.Context) ([]MigrationTask, error) {
	var out []MigrationTask
	var refused *MigrationsRefusedError
	opts := storage.ListOptions{Limit: storage.MaxPageSize}
	for {
		page, err := s.catalog.ListTenants(ctx, opts)
		if err != nil {
			return out, fmt.Errorf("migrate all: list tenants after %q: %w", opts.After, err)
		}
		for _, t := range page {
			if t.Status.Decide(tenantctx.Migration) == tenantctx.Refuse {
				continue
			}
			m, err := s.EnqueueMigration(ctx, t)
			if errors.Is(err, storage.ErrNotFound) {
				// Erased since the page was read (its tenant:destroy
				// completed): there is nothing left to migrate, and the
				// tenants after it must still get theirs.
				s.logger.InfoContext(ctx, "migrate all: tenant erased during the walk, skipped",
					slog.String("tenant_id", t.ID))
				continue
			}
			if full := (*fair.FullError)(nil); errors.As(err, &full) {
				if refused == nil {
					refused = &MigrationsRefusedError{First: err}
				}
				refused.Refused++
				continue
			}
			if err != nil {
				return out, fmt.Errorf("migrate all: %w", err)
			}
			out = append(out, m)
		}
		if len(page) < opts.PageLimit() {
			if refused != nil {
				return out, refused
			}
			return out, nil
		}
		opts.After = page[len(page)-1].ID
	}
}

// MigrateResult is what Migrate did: the task result of tenant:migrate and
// the detail of ActionMigrated.
type MigrateResult struct {
	Schema  string `json:"schema"`
	Created bool   `json:"created"`
	From    int    `json:"from"`
	To      int    `json:"to"`
	Applied []int  `json:"applied"`
	// Failed is the error that stopped a run after the steps in Applied
	// (its audit entry only: such a run's task fails).
	Failed string `json:"failed,omitempty"`
	// Activated is true when this call made a provisioning tenant active.
	Activated bool `json:"-"`
}

// Migrate migrates t's schema to target (0: the latest version) on the
// schema pool, creating it for a provisioning tenant, then activates a
// provisioning tenant: a new tenant is active only once its migrations
// succeeded. The activation is a compare-and-set from provisioning
// (storage.TenantStore.SetStatusFrom): a late run with a stale t, whose
// tenant another run activated (and an operator perhaps suspended since),
// leaves the status as it is. It writes ActionMigrated when the call changed the schema (a
// no-op run over every tenant writes nothing) and ActionStatusChanged on
// activation. A run whose activation committed but whose answer was lost
// records nothing; its retry, which finds the tenant active, records it
// through RecordActivation (the worker calls it on a retried run).
//
// Only a tenant that is still provisioning gets a schema created (P17 in
// docs/architecture.md): t may be stale (the worker resolved it through a
// cache, before a deletion), so the catalog is asked again in the very
// transaction that creates the schema, under the tenant's lock, with the
// catalog row share-locked until it commits (storage.LockTenantStatus).
// A deletion marks the tenant deleting first, which waits for that commit
// or makes the check fail, and only then drops the schema (schema.Drop,
// under the same tenant lock): a migration racing a deletion either
// creates the schema before the drop, which removes it, or creates
// nothing. The schema it creates records t as its owner, and a
// provisioning tenant never migrates (adopts) a schema that is not its
// own: one left over from a deleted tenant with the same slug. Nor does
// the migration of an existing tenant: a late run with a stale t, whose
// tenant was destroyed and its slug given to a new tenant since, finds the
// new tenant's schema recorded for that tenant (before its first step, and
// under the tenant's lock in every step) and applies nothing to it; a
// schema that records no owner (made before owners were recorded) is
// migrated as t's.
//
// Errors: ErrRefused when the status policy refuses a migration for t's
// status, when t was deleted (or marked deleting) before its schema was
// created or before it could be activated, when t's schema is missing and
// t is not provisioning (schema.ErrNoSchema), or when it exists and is not
// t's (schema.ErrSchemaTaken); ErrInvalidTarget for a target above the
// latest version; ErrBlockedByData when a step fails on t's own rows
// (schema.ErrRefusedByData: the steps before it stay applied);
// schema.ErrMigrationMismatch, wrapped, when t's schema recorded other
// migrations than this release's under the versions it applied (nothing
// is applied; it fails the same way until the release is fixed). Other
// errors (the database) are worth retrying.
func (s *Service) Migrate(ctx context.Context, t tenantctx.Tenant, target int, actor string) (MigrateResult, error) {
	if err := allowed(t, tenantctx.Migration); err != nil {
		return MigrateResult{}, fmt.Errorf("migrate tenant %s: %w", t.ID, err)
	}
	if target > schema.LatestVersion() {
		return MigrateResult{}, fmt.Errorf("migrate tenant %s: %w: version %d is above the latest %d", t.ID, ErrInvalidTarget, target, schema.LatestVersion())
	}
	pool, err := s.schemaPool(ctx, t)
	if err != nil {
		return MigrateResult{}, fmt.Errorf("migrate tenant %s: %w", t.ID, err)
	}
	// An existing tenant's schema must be its own (or predate owners): t
	// may be stale, and its schema dropped and made again for the slug's
	// next tenant since.
	opts := schema.MigrateOptions{Target: target, Owner: t.ID}
	var catalogTx pgx.Tx
	if t.Status == tenantctx.StatusProvisioning {
		allow := stillProvisioning(t.ID)
		if t.DatabaseName() != tenantctx.DefaultDatabase {
			// The catalog is not on the tenant's database: read and
			// share-lock the tenant's row in a transaction on the
			// catalog's database, kept open until the transaction that
			// creates the schema has ended (below), so that a deletion
			// (which marks the row deleting first) still waits for the
			// creation to commit. It runs at read committed whatever the
			// catalog database's default_transaction_isolation: at
			// repeatable read or serializable a check that waited for
			// another write of the row (a change of plan, a deletion
			// request) was refused (SQLSTATE 40001) and the migration
			// failed instead of reading the row as committed.
			catalogPool, err := s.catalogPool(ctx)
			if err != nil {
				return MigrateResult{}, fmt.Errorf("migrate tenant %s: %w", t.ID, err)
			}
			check := allow
			allow = func(ctx context.Context, _ pgx.Tx) error {
				if catalogTx == nil {
					tx, err := catalogPool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
					if err != nil {
						return fmt.Errorf("catalog transaction: %w", err)
					}
					catalogTx = tx
				}
				return check(ctx, catalogTx)
			}
		}
		opts.Create = &schema.Creation{Owner: t.ID, Allow: s.preparingDocuments(t.ID, allow)}
	}
	r, err := schema.MigrateWith(ctx, pool, t.Schema, opts)
	if catalogTx != nil {
		// After the schema's transaction ended, and before SetStatus
		// (which locks the row for update) below.
		if cerr := catalogTx.Commit(ctx); cerr != nil && err == nil {
			err = fmt.Errorf("catalog transaction: %w", cerr)
		}
	}
	if err != nil && (r.Created || len(r.Applied) > 0) {
		// The steps before the failure committed, each on its own, and no
		// later run applies them again: record them now, with what
		// stopped the run.
		partial := MigrateResult{Schema: r.Schema, Created: r.Created, From: r.From, To: r.To, Applied: r.Applied, Failed: err.Error()}
		if partial.Applied == nil {
			partial.Applied = []int{} // created, nothing applied yet
		}
		actx, cancel := completing(ctx)
		s.logFailure(actx, t.ID, ActionMigrated, s.audit(actx, t.ID, actor, ActionMigrated, partial))
		cancel()
	}
	switch {
	case errors.Is(err, schema.ErrNoSchema), errors.Is(err, schema.ErrSchemaTaken):
		return MigrateResult{}, fmt.Errorf("migrate tenant %s: %w: %w", t.ID, ErrRefused, err)
	case errors.Is(err, schema.ErrRefusedByData):
		return MigrateResult{}, fmt.Errorf("migrate tenant %s: %w: %w", t.ID, ErrBlockedByData, err)
	case err != nil:
		return MigrateResult{}, fmt.Errorf("migrate tenant %s: %w", t.ID, err)
	}
	res := MigrateResult{Schema: r.Schema, Created: r.Created, From: r.From, To: r.To, Applied: r.Applied}
	if res.Applied == nil {
		res.Applied = []int{}
	}
	// Committed: record it even if the caller goes away now (a retry
	// finds nothing to do and would record nothing).
	actx, cancel := completing(ctx)
	defer cancel()
	if r.Created || len(r.Applied) > 0 {
		if err := s.audit(actx, t.ID, actor, ActionMigrated, res); err != nil {
			return res, err
		}
	}
	if t.Status != tenantctx.StatusProvisioning {
		return res, nil
	}
	// Only from provisioning: another run of the migration may have
	// activated the tenant meanwhile, and an operator suspended it since;
	// this late run must not make it active again.
	cur, err := s.catalog.SetStatusFrom(ctx, t.ID, tenantctx.StatusProvisioning, tenantctx.StatusActive)
	// Saved but not propagated (storage.ErrInvalidationFailed): the tenant
	// is active, and a retry would find nothing to activate, so it is
	// recorded now, and the error returned (other processes may still see
	// it provisioning for a while), as changeStatus does.
	notPropagated := errors.Is(err, storage.ErrInvalidationFailed)
	switch {
	case notPropagated:
	case errors.Is(err, storage.ErrStatusChanged) && cur.Status.Decide(tenantctx.Migration) != tenantctx.Refuse:
		// Activated by another run, or by a run of this task whose answer
		// was lost (and which recorded nothing): recorded once.
		return res, s.recordActivation(actx, t.ID, actor)
	case errors.Is(err, storage.ErrStatusChanged), errors.Is(err, storage.ErrInvalidTransition), errors.Is(err, storage.ErrNotFound):
		// Deleted or marked deleting while it was being provisioned.
		return res, fmt.Errorf("activate tenant %s after migrating: %w: %w", t.ID, ErrRefused, err)
	case err != nil:
		err = fmt.Errorf("activate tenant %s: %w", t.ID, err)
		if outcomeUnknown(err) {
			// The connection was lost at the activation's commit: it may
			// be saved. If it is, it is recorded now, else by the retry,
			// which finds the tenant active (above); once, whichever
			// records it.
			if now, rerr := s.catalog.TenantByID(actx, t.ID); rerr == nil && now.Status == tenantctx.StatusActive {
				s.logFailure(actx, t.ID, ActionStatusChanged, s.recordActivation(actx, t.ID, actor))
			}
		}
		return res, err
	}
	if notPropagated {
		s.logFailure(actx, t.ID, ActionStatusChanged, s.recordOwnActivation(actx, t.ID, actor))
		res.Activated = true
		return res, fmt.Errorf("activate tenant %s: %w", t.ID, err)
	}
	if err := s.recordOwnActivation(actx, t.ID, actor); err != nil {
		return res, err
	}
	res.Activated = true
	return res, nil
}

// unrecordedRun is the "failed" of the tenant.migrated entry that
// RecordUnrecordedSteps writes.
const unrecordedRun = "the run that applied these steps ended before recording them (its worker killed); recorded by a later run"

// RecordUnrecordedSteps records, in one ActionMigrated entry, the steps
// of t's schema up to version upTo (the From of a run of Migrate) that no
// entry of the tenant records (the entries' "applied"), when t is still
// provisioning: a run of Migrate writes its entry once all its steps
// committed, so a run killed in between (kill -9, a lost machine) left
// them unrecorded, and its retry, which finds them applied, records only
// what it applies itself. The worker calls it on a retried run (asynq's
// retry of a killed worker's task is one), after Migrate. Only for a
// provisioning tenant: every step of its schema was made by a run of
// Migrate for it (it never adopts another schema), while an older
// tenant's schema may predate the audit log. With no entry yet, it is
// written once (storage.AuditLog.AppendAuditOnce).
func (s *Service) RecordUnrecordedSteps(ctx context.Context, t tenantctx.Tenant, upTo int, actor string) error {
	if t.Status != tenantctx.StatusProvisioning || upTo <= 0 {
		return nil
	}
	ctx, cancel := completing(ctx)
	defer cancel()
	entries, err := s.catalog.AuditEntries(ctx, t.ID)
	if err != nil {
		return fmt.Errorf("record unrecorded migrations of tenant %s: %w", t.ID, err)
	}
	recorded, created, seen := map[int]bool{}, false, false
	for _, e := range entries {
		if e.Action != string(ActionMigrated) {
			continue
		}
		var d MigrateResult
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			continue
		}
		seen, created = true, created || d.Created
		for _, v := range d.Applied {
			recorded[v] = true
		}
	}
	gap := MigrateResult{Schema: t.Schema, Created: !created, To: upTo, Failed: unrecordedRun}
	for v := 1; v <= upTo; v++ {
		if !recorded[v] {
			gap.Applied = append(gap.Applied, v)
		}
	}
	if len(gap.Applied) == 0 {
		return nil
	}
	gap.From = gap.Applied[0] - 1
	if !seen {
		// Concurrent retries of a first run record it once.
		return s.auditOnce(ctx, t.ID, actor, ActionMigrated, gap)
	}
	return s.audit(ctx, t.ID, actor, ActionMigrated, gap)
}

// preparingDocuments returns allow followed, once it lets the schema be
// created, by the preparation of the tenant's document directories
// (Config.DocumentDirs), when the document store can prepare them. It runs
// in the transaction that creates the schema, holding the tenant's lock
// and share-locking its catalog row: a deletion, which marks the row
// first and erases the documents after dropping the schema under that
// lock, comes after it and removes what it made, and a tenant already
// marked deleting (or erased) is refused by allow before anything is made.
// A preparation that fails is logged and does not stop the provisioning:
// the tenant's first document makes what is missing, as before.
func (s *Service) preparingDocuments(id string, allow func(context.Context, pgx.Tx) error) func(context.Context, pgx.Tx) error {
	p, ok := s.documents.(storage.TenantPreparer)
	if !ok {
		return allow
	}
	return func(ctx context.Context, tx pgx.Tx) error {
		if err := allow(ctx, tx); err != nil {
			return err
		}
		if err := p.PrepareTenant(ctx, id, s.docDirs...); err != nil {
			s.logger.WarnContext(ctx, "provisioning: document directories not prepared, the first document will make them",
				slog.String("tenant_id", id), slog.Any("error", err))
		}
		return nil
	}
}

// catalogPool returns a pool on the catalog's database ("main").
func (s *Service) catalogPool(ctx context.Context) (*pgxpool.Pool, error) {
	if s.pools != nil {
		return s.pools.SchemaPool(ctx, tenantctx.DefaultDatabase)
	}
	if s.pool == nil {
		return nil, errors.New("tenancy: no schema pool configured")
	}
	return s.pool, nil
}

// stillProvisioning is the schema.Creation.Allow of a provisioning
// tenant: in the transaction that creates the schema it reads the tenant's
// status from the catalog itself and share-locks its row until that
// transaction ends. ErrRefused unless the tenant is still provisioning.
func stillProvisioning(id string) func(ctx context.Context, tx pgx.Tx) error {
	return func(ctx context.Context, tx pgx.Tx) error {
		status, err := storage.LockTenantStatus(ctx, tx, id)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return fmt.Errorf("%w: tenant %s was deleted", ErrRefused, id)
		case err != nil:
			return err
		case status != tenantctx.StatusProvisioning:
			return fmt.Errorf("%w: tenant %s is %.40s, not provisioning", ErrRefused, id, status)
		}
		return nil
	}
}

// allowed turns the status policy's verdict on activity a for t into
// ErrRefused, ErrNotReady or nil.
func allowed(t tenantctx.Tenant, a tenantctx.Activity) error {
	switch t.Status.Decide(a) {
	case tenantctx.Run:
		return nil
	case tenantctx.Wait:
		return fmt.Errorf("%w: %s while %s", ErrNotReady, a, t.Status)
	}
	return fmt.Errorf("%w: %s while %.40s", ErrRefused, a, t.Status)
}
