package tenancy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// Errors of the lifecycle; match them with errors.Is. Catalog errors
// (storage.ErrNotFound, storage.ErrConflict, storage.ErrInvalidTransition)
// are returned wrapped as they are.
var (
	// ErrRefused: the status policy refuses the operation for the tenant's
	// status (it is being deleted), or the tenant went away meanwhile, or
	// its schema is missing or not its own (Migrate).
	ErrRefused = errors.New("refused for the tenant's status")
	// ErrNotReady: the status policy makes the operation wait until the
	// tenant's status changes (destroying a tenant not marked deleting).
	ErrNotReady = errors.New("not yet allowed for the tenant's status")
	// ErrInvalidTarget: a migration target above the latest schema version.
	ErrInvalidTarget = errors.New("invalid migration target")
	// ErrBlockedByData: a migration step failed on the tenant's own rows
	// (schema.ErrRefusedByData, such as customers sharing an email
	// address); it fails the same way until an operator changes the data.
	ErrBlockedByData = errors.New("migration blocked by the tenant's data")
	// ErrNoDispatch: the operation needs fair dispatch, which is off
	// (FAIR_DISPATCH=false).
	ErrNoDispatch = errors.New("fair dispatch is off")
	// ErrUnknownPlan: a plan this process has no policy for (Config.Plans,
	// PLAN_LIMITS); its tenants would silently get the default plan's.
	ErrUnknownPlan = errors.New("unknown plan")
)

// checkPlan returns ErrUnknownPlan when plan is not empty and not one of
// the configured plans. Without plans configured every plan is accepted.
func (s *Service) checkPlan(plan string) error {
	if plan == "" || s.plans == nil {
		return nil
	}
	if _, ok := s.plans[plan]; !ok {
		return fmt.Errorf("%w %.40q (known: %s)", ErrUnknownPlan, plan, strings.Join(slices.Sorted(maps.Keys(s.plans)), ", "))
	}
	return nil
}

// completeTimeout bounds what completes a change once it is saved
// (completing).
const completeTimeout = 30 * time.Second

// completing returns ctx without its cancellation, bounded by
// completeTimeout, for what completes a change that is saved in the
// catalog: its audit entry, the holds, drains and releases of its backlog,
// the tenant:destroy of a deletion. A caller that goes away right after the
// write (an HTTP client that disconnected, a proxy that gave up) must not
// leave the change half done: a second call finds nothing to change and
// would not record or finish it.
func completing(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), completeTimeout)
}

// Config is what a Service works with. Catalog and Enqueuer are required.
type Config struct {
	// Catalog is the tenant catalog (the cached one in the binaries).
	Catalog storage.Catalog
	// Enqueuer enqueues tenant:migrate and tenant:destroy.
	Enqueuer *tasks.Enqueuer
	// Documents holds the tenants' documents; Destroy removes them, and
	// Migrate prepares a new tenant's DocumentDirs in it when the store
	// can (storage.TenantPreparer).
	Documents storage.DocumentStore
	// DocumentDirs are the key prefixes of the documents tenants get
	// ("invoices"): made in Documents when Migrate creates a tenant's
	// schema, so that the tenant's first document does not wait for its
	// directories. Without them only the tenant's own directories are.
	DocumentDirs []string
	// SchemaPool runs schema changes (create, migrate, drop): a pool from
	// schema.NewPool, possibly on MIGRATIONS_DATABASE_URL, on the database
	// that holds the catalog (Migrate reads the tenant's status in the
	// transaction that creates its schema). Migrate and Destroy need it;
	// Provision uses it to refuse a schema left over under the slug.
	SchemaPool *pgxpool.Pool
	// Pools, when set, reaches each tenant's database (package placement):
	// schema changes run on the database holding the tenant, new tenants
	// are placed by it, and Move needs it. Without it every tenant is on
	// SchemaPool's database ("main").
	Pools *placement.Registry
	// Dispatcher, when set, holds the backlogs of suspended and paused
	// tenants, drains them and reports them (package fair); nil when fair
	// dispatch is off.
	Dispatcher *fair.Dispatcher
	// Plans are the plans' policies, for reporting a tenant's policy.
	Plans fair.Plans
	// Logger receives audit failures that are not returned (the change
	// they record has already happened); nil discards them.
	Logger *slog.Logger
}

// Service runs the tenant lifecycle. It is safe for concurrent use.
type Service struct {
	catalog   storage.Catalog
	enqueuer  *tasks.Enqueuer
	documents storage.DocumentStore
	docDirs   []string
	pool      *pgxpool.Pool
	pools     *placement.Registry
	fair      *fair.Dispatcher
	plans     fair.Plans
	logger    *slog.Logger
}

// New returns a Service over c. It panics without a Catalog or an
// Enqueuer: a wiring mistake at start-up.
func New(c Config) *Service {
	if c.Catalog == nil || c.Enqueuer == nil {
		panic("tenancy: New needs a Catalog and an Enqueuer")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{catalog: c.Catalog, enqueuer: c.Enqueuer, documents: c.Documents, docDirs: c.DocumentDirs, pool: c.SchemaPool, pools: c.Pools, fair: c.Dispatcher, plans: c.Plans, logger: c.Logger}
}

// layout returns the queue layout of the Enqueuer: the queues the
// tenant operations hold, drain, forget and read cover the shards it
// serves (tasks.Layout).
func (s *Service) layout() tasks.Layout { return s.enqueuer.Layout() }

// schemaPool returns the pool running schema changes on the database
// holding t: through Pools when set; otherwise SchemaPool, which serves
// only tenants placed on "main" (anything else fails closed).
func (s *Service) schemaPool(ctx context.Context, t tenantctx.Tenant) (*pgxpool.Pool, error) {
	if s.pools != nil {
		return s.pools.SchemaForTenant(ctx, t)
	}
	if t.DatabaseName() != tenantctx.DefaultDatabase {
		return nil, fmt.Errorf("tenant %s is placed on database %s: %w (no pool registry)", t.ID, t.DatabaseName(), placement.ErrUnknownDatabase)
	}
	if s.pool == nil {
		return nil, errors.New("tenancy: no schema pool configured")
	}
	return s.pool, nil
}
