package tenancy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// DefaultPlan is the plan of a tenant provisioned without one.
const DefaultPlan = "free"

// NewTenant is what Provision creates a tenant from.
type NewTenant struct {
	// Slug is the subdomain label; it is validated (tenantctx.New).
	Slug string
	// Name is the display name; "" means the slug.
	Name string
	// Plan is the commercial plan; "" means DefaultPlan.
	Plan string
	// Database is the tenant database to place it on; "" means the
	// registered database with the fewest tenants (placement.Choose).
	Database string
	// TimeZone is the IANA name of the tenant's time zone, in which its
	// invoices' due dates are judged (tenantctx.ValidateTimeZone); ""
	// means tenantctx.DefaultTimeZone.
	TimeZone string
}

// Provisioned is a newly provisioned tenant.
type Provisioned struct {
	// Tenant is the catalog row, status provisioning.
	Tenant tenantctx.Tenant
	// APIKey is the tenant's first API key; its plaintext exists only here.
	APIKey string
	// MigrateTaskID is the tenant:migrate task that creates the schema and
	// makes the tenant active.
	MigrateTaskID string
}

// Provision creates a tenant: validates the slug, checks that its schema
// does not exist yet, inserts the catalog row in status provisioning,
// creates its first API key, records ActionProvisioned and enqueues
// tenant:migrate, which creates the schema and activates the tenant.
//
// A new tenant never adopts an existing schema (P17 in
// docs/architecture.md): one left over from a deleted tenant with the same
// slug, or made by hand. Provision refuses it before creating anything,
// and logs (for operators) the schema and the tenant it was created for;
// its migration refuses it again, under the tenant's lock, should one
// appear meanwhile (Migrate). The check needs the schema pool; without one
// only the migration's check applies.
//
// Errors: tenantctx.ErrInvalidSlug or ErrReservedSlug for a bad slug,
// tenantctx.ErrInvalidTimeZone for a bad time zone,
// ErrUnknownPlan for a plan without a policy, storage.ErrConflict for a
// taken one, ErrBeingDeleted (which wraps storage.ErrConflict) when it is
// the slug of a tenant being deleted, ErrSchemaLeftOver (which wraps
// storage.ErrConflict) when the slug's schema exists.
//
// It is all or nothing for the caller: when a step after the catalog row
// fails (the key, the audit entry, or the enqueue of tenant:migrate, for
// example refused with a fair.ErrQueueFull), the row and its key are
// deleted again and ActionProvisionAborted is recorded, so a retry can
// take the slug; so is a catalog row whose INSERT's outcome is unknown
// (the connection to PostgreSQL lost at its commit). Only if that
// clean-up fails too is the tenant left in provisioning, and the error
// says so; MigrateAll (which includes
// provisioning tenants) and IssueKey finish it then. A clean-up not ended
// by ctx's deadline goes on without the caller, and the error wraps
// ErrStillCompleting (abortProvision).
func (s *Service) Provision(ctx context.Context, nt NewTenant, actor string) (p Provisioned, err error) {
	if nt.Name == "" {
		nt.Name = nt.Slug
	}
	if nt.Plan == "" {
		nt.Plan = DefaultPlan
	}
	if err := s.checkPlan(nt.Plan); err != nil {
		return Provisioned{}, fmt.Errorf("provision tenant: %w", err)
	}
	t, err := tenantctx.New(nt.Slug, nt.Name, nt.Plan)
	if err != nil {
		return Provisioned{}, fmt.Errorf("provision tenant: %w", err)
	}
	if nt.TimeZone != "" {
		if err := tenantctx.ValidateTimeZone(nt.TimeZone); err != nil {
			return Provisioned{}, fmt.Errorf("provision tenant %s: %w", nt.Slug, err)
		}
		t.TimeZone = nt.TimeZone
	}
	if t.Database, err = s.chooseDatabase(ctx, nt.Database); err != nil {
		return Provisioned{}, err
	}
	if err := s.checkSchemaFree(ctx, t); err != nil {
		return Provisioned{}, fmt.Errorf("provision tenant %s: %w", nt.Slug, s.slugBeingDeleted(ctx, nt.Slug, err))
	}
	created, err := s.catalog.CreateTenant(ctx, t)
	if err != nil {
		err = fmt.Errorf("provision tenant %s: %w", nt.Slug, s.slugBeingDeleted(ctx, nt.Slug, err))
		if notCreated(err) {
			return Provisioned{}, err
		}
		// The outcome is unknown (the connection was lost at the INSERT's
		// commit, or ctx ended while it ran): the row may be saved, and
		// would hold the slug in provisioning, without a key or a
		// migration. It is deleted by its id like any aborted one.
		return Provisioned{}, s.abortProvision(ctx, t, actor, err)
	}
	t = created
	defer func() {
		if err != nil {
			err = s.abortProvision(ctx, t, actor, err)
		}
	}()
	key, err := s.catalog.CreateAPIKey(ctx, t.ID)
	if err != nil {
		return Provisioned{}, fmt.Errorf("provision tenant %s: create api key: %w", nt.Slug, err)
	}
	detail := map[string]string{"slug": t.Slug, "plan": t.Plan, "database": t.DatabaseName(), "time_zone": t.TimeZoneName()}
	if err := s.audit(ctx, t.ID, actor, ActionProvisioned, detail); err != nil {
		return Provisioned{}, fmt.Errorf("provision tenant %s: %w", nt.Slug, err)
	}
	res, err := s.enqueuer.Enqueue(ctx, tasks.TenantMigrate{TenantID: t.ID})
	if err != nil {
		return Provisioned{}, fmt.Errorf("provision tenant %s: enqueue its migration: %w", nt.Slug, err)
	}
	return Provisioned{Tenant: t, APIKey: key, MigrateTaskID: res.Info.ID}, nil
}

// notCreated reports whether err, from the catalog's CreateTenant, says
// the row was certainly not created: the slug or id is taken, the tenant
// was refused before anything was sent, PostgreSQL could not be reached
// (nothing was sent: pgconn.ConnectError, pgconn.SafeToRetry), or it
// refused the INSERT (an error of its own other than a lost connection or
// a shutdown). Any other error leaves the outcome unknown.
func notCreated(err error) bool {
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) || pgconn.SafeToRetry(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !strings.HasPrefix(pgErr.Code, "08") && !strings.HasPrefix(pgErr.Code, "57") {
		return true
	}
	for _, target := range []error{storage.ErrConflict, tenantctx.ErrInvalidID, tenantctx.ErrInvalidSlug,
		tenantctx.ErrReservedSlug, tenantctx.ErrInvalidSchema, tenantctx.ErrInvalidStatus, tenantctx.ErrInvalidText,
		tenantctx.ErrInvalidLimits, tenantctx.ErrInvalidDatabase} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// abortTimeout bounds the deletion of the catalog row of a provisioning
// that failed.
const abortTimeout = 10 * time.Second

// abortProvision undoes a provisioning that failed with cause after t's
// catalog row was created, or may have been: it withdraws the row and its
// keys (storage.TenantStore.WithdrawTenant: deleted, and an INSERT of it
// still on its way to PostgreSQL fails; a tenant:migrate that was enqueued
// after all finds no tenant and is archived), drops the schema and
// documents a migration of it made before the withdrawal
// (dropAbortedSchema), forgets the tenant in the fair dispatcher (an
// enqueue of its tenant:migrate that failed, its answer lost, may have
// added the task there after all, and the tenant's policy with it; a
// refused one stores nothing) and records ActionProvisionAborted. It
// returns cause, or, when the clean-up fails, cause with what was left
// behind (wrapping ErrLeftInProvisioning). The clean-up runs even when ctx
// was cancelled (the client went away) or its deadline passed, within
// abortTimeout for the row's deletion, but the caller waits for it only
// until ctx's deadline (an admin request's, which must answer then): past
// it, cause comes back wrapping ErrStillCompleting (the tenant created is
// being deleted without the caller, which logs the outcome; Wait waits for
// it). Once the row is deleted, the caller waits for the rest (the
// dispatcher, the audit entry) only until ctx's deadline too: nothing of
// the tenant but those few dispatcher keys is kept by then.
func (s *Service) abortProvision(ctx context.Context, t tenantctx.Tenant, actor string, cause error) error {
	err := s.complete(ctx, t.ID, "abort provisioning: delete the tenant", func(cctx context.Context) error {
		dctx, cancel := context.WithTimeout(cctx, abortTimeout)
		defer cancel()
		// Withdrawn, not only deleted: an INSERT whose outcome is unknown
		// may still be running, or reach PostgreSQL only now, and would
		// otherwise hold the slug after a delete that found nothing.
		err := s.catalog.WithdrawTenant(dctx, t.ID)
		if errors.Is(err, storage.ErrInvalidationFailed) || errors.Is(err, storage.ErrNotFound) {
			err = nil // nothing served it yet: no replica caches a tenant in provisioning for long
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrLeftInProvisioning, err)
		}
		// Withdrawn: no migration can create its schema from now on, but
		// one may have done so already (a tenant:migrate of POST
		// /admin/migrations, or of an enqueue whose answer was lost).
		s.dropAbortedSchema(dctx, t)
		// On the caller's ctx: past its deadline this goes on without the
		// caller, and logs.
		_ = s.complete(ctx, t.ID, "abort provisioning: forget the tenant, record it", func(ctx context.Context) error {
			if s.fair != nil {
				// The dispatcher keeps the tenant's policy and task of a
				// tenant:migrate enqueue that failed but got through after
				// all (its answer lost); no deletion will ever forget a
				// tenant that never was. A failure leaves only those few
				// small keys behind.
				if ferr := s.fair.Forget(ctx, t.ID, s.holdQueues(t.ID)...); ferr != nil {
					s.logger.WarnContext(ctx, "forget aborted tenant in the dispatcher", slog.String("tenant_id", t.ID), slog.String("error", ferr.Error()))
				}
			}
			s.logFailure(ctx, t.ID, ActionProvisionAborted, s.audit(ctx, t.ID, actor, ActionProvisionAborted, map[string]string{"slug": t.Slug}))
			return nil
		})
		return nil
	})
	switch {
	case errors.Is(err, ErrStillCompleting):
		return fmt.Errorf("%w (tenant %s created, being deleted again: %w)", cause, t.ID, err)
	case err != nil:
		return fmt.Errorf("%w (tenant %s created and %w)", cause, t.ID, err)
	}
	return fmt.Errorf("%w (nothing was kept)", cause)
}

// dropAbortedSchema removes what a migration of t, a tenant whose
// provisioning failed and whose catalog row is withdrawn, may have made
// before the withdrawal: its schema, when it records t as its owner (never
// one made by hand or another tenant's), and its documents. Left over,
// they would refuse every later provisioning of the slug
// (ErrSchemaLeftOver). A failure is logged, naming the schema.
func (s *Service) dropAbortedSchema(ctx context.Context, t tenantctx.Tenant) {
	if s.pool == nil && s.pools == nil {
		return
	}
	pool, err := s.schemaPool(ctx, t)
	if err == nil {
		var exists bool
		var owner string
		exists, owner, err = schema.Owner(ctx, pool, t.Schema)
		if err == nil && exists && owner == t.ID {
			_, err = schema.DropOwned(ctx, pool, t.Schema, t.ID)
		}
	}
	if err == nil && s.documents != nil {
		err = s.documents.DeleteTenant(ctx, t.ID)
	}
	if err != nil {
		s.logger.ErrorContext(ctx, "abort provisioning: drop what its migration made; drop the schema by hand",
			slog.String("tenant_id", t.ID), slog.String("schema", t.Schema), slog.String("error", err.Error()))
	}
}

// ErrLeftInProvisioning: a provisioning failed and so did its clean-up:
// the tenant's catalog row is left in status provisioning. MigrateAll or
// IssueKey finish it; a deletion removes it.
var ErrLeftInProvisioning = errors.New("left in provisioning")

// ErrSchemaLeftOver: the schema a new tenant would get exists already
// (left over from a deleted tenant with the same slug, or made by hand).
// Provisioning does not adopt it; an operator checks what it holds and
// drops it. It wraps storage.ErrConflict: the slug cannot be used yet.
var ErrSchemaLeftOver = fmt.Errorf("schema left over: %w", storage.ErrConflict)

// ErrBeingDeleted: the slug belongs to a tenant being deleted (its
// tenant:destroy has not deleted its catalog row yet). It wraps
// storage.ErrConflict: the slug can be provisioned again once the
// deletion completed.
var ErrBeingDeleted = fmt.Errorf("tenant being deleted: %w", storage.ErrConflict)

// slugBeingDeleted returns ErrBeingDeleted, naming the tenant, when err is
// a conflict (the slug or its schema taken) and the slug's tenant is being
// deleted; otherwise err. A slug that no tenant holds any more, when err
// is not a left-over schema, was held at the conflict by a tenant whose
// row went since: its tenant:destroy (or an aborted provisioning) deleted
// it meanwhile, and the answer is ErrBeingDeleted too (provision again),
// not a slug taken. Another failed lookup keeps err.
func (s *Service) slugBeingDeleted(ctx context.Context, slug string, err error) error {
	if !errors.Is(err, storage.ErrConflict) {
		return err
	}
	t, lerr := s.catalog.TenantBySlug(ctx, slug)
	switch {
	case lerr == nil && t.Status == tenantctx.StatusDeleting:
		return fmt.Errorf("%w: tenant %s (%s) is being deleted; provision it again once its deletion completed", ErrBeingDeleted, slug, t.ID)
	case errors.Is(lerr, storage.ErrNotFound) && !errors.Is(err, ErrSchemaLeftOver):
		return fmt.Errorf("%w: the tenant %s held was deleted meanwhile; provision it again", ErrBeingDeleted, slug)
	}
	return err
}

// checkSchemaFree returns ErrSchemaLeftOver when t's schema exists and no
// tenant of the catalog holds it, and logs a warning naming the schema and
// the tenant it was created for. A schema of a live tenant with the slug
// is the ordinary storage.ErrConflict of a taken slug.
func (s *Service) checkSchemaFree(ctx context.Context, t tenantctx.Tenant) error {
	if s.pool == nil && s.pools == nil {
		return nil
	}
	// The database's current registration, looked up afresh: t carries no
	// registration yet, and a pool this process holds may be of one removed
	// (and registered again elsewhere) since.
	var pool *pgxpool.Pool
	var err error
	if s.pools != nil {
		pool, err = s.pools.SchemaPool(ctx, t.DatabaseName())
	} else {
		pool, err = s.schemaPool(ctx, t)
	}
	if err != nil {
		return err
	}
	exists, owner, err := schema.Owner(ctx, pool, t.Schema)
	if err != nil {
		return err
	}
	if !exists {
		return nil
	}
	if live, err := s.catalog.TenantBySlug(ctx, t.Slug); err == nil {
		return fmt.Errorf("slug taken by tenant %s: %w", live.ID, storage.ErrConflict)
	}
	if owner != "" {
		if live, err := s.catalog.TenantByID(ctx, owner); err == nil && live.Schema == t.Schema {
			return fmt.Errorf("slug taken by tenant %s: %w", live.ID, storage.ErrConflict)
		}
	}
	whose := "records no owner"
	if owner != "" {
		whose = "was created for tenant " + owner
	}
	s.logger.WarnContext(ctx, "provisioning refused: the tenant's schema exists already; check what it holds and drop it to use the slug",
		slog.String("slug", t.Slug), slog.String("schema", t.Schema), slog.String("schema_owner", owner))
	return fmt.Errorf("%w: schema %s exists (it %s); drop it after checking what it holds, then provision again", ErrSchemaLeftOver, t.Schema, whose)
}

// chooseDatabase places a new tenant: want when set (registered, with a
// known URL), else the least loaded database; "main" without a registry.
func (s *Service) chooseDatabase(ctx context.Context, want string) (string, error) {
	if want != "" {
		if err := tenantctx.ValidateDatabaseName(want); err != nil {
			return "", err
		}
	}
	if s.pools == nil {
		if want != "" && want != tenantctx.DefaultDatabase {
			return "", fmt.Errorf("%w: %s (no pool registry)", placement.ErrUnknownDatabase, want)
		}
		return tenantctx.DefaultDatabase, nil
	}
	return s.pools.Choose(ctx, want)
}
