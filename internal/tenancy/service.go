package tenancy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	// tenant's status changes (destroying a tenant not marked deleting;
	// pausing or draining the queue of a tenant still provisioning).
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

// ErrStillCompleting: the change is saved, but what completes it (the
// hold, release or drain of the tenant's backlog, the dispatcher's policy,
// the tenant:destroy of a deletion) had not ended by the caller's
// deadline. It goes on without the caller, bounded by completeTimeout, and
// logs its outcome; repeating the call is safe and completes it again.
var ErrStillCompleting = errors.New("saved, still completing after the deadline")

// The states of a completion (complete): running, ended (its caller takes
// the result) or abandoned (its caller's deadline passed).
const (
	completionRunning int32 = iota
	completionEnded
	completionAbandoned
)

// complete runs f, what completes the change of tenant id that is saved
// already, on completing(ctx): unbounded by ctx, within completeTimeout.
// The caller waits for it, but not past ctx's deadline (an HTTP request's,
// which must answer then): complete then returns an error wrapping
// ErrStillCompleting and context.DeadlineExceeded, and f goes on and logs
// its outcome (with op and tenant_id). A ctx cancelled before its deadline
// (the client went away) waits for f as before. Wait waits for the
// completions that went on.
func (s *Service) complete(ctx context.Context, id, op string, f func(context.Context) error) error {
	return s.detach(ctx, id, op, ErrStillCompleting, f)
}

// bounded runs f, Redis work of the dispatcher for tenant id, so that the
// caller stops waiting for it at ctx's deadline, also when Redis does not
// answer: the dispatcher's client may be an autopipeliner, whose batches
// end by the client's own timeouts and retries, not by ctx. Past the
// deadline it returns an error wrapping context.DeadlineExceeded, and f
// goes on (within completeTimeout), as a script that was sent may have
// run; it logs its outcome. What f did is then unknown to the caller.
func (s *Service) bounded(ctx context.Context, id, op string, f func(context.Context) error) error {
	return s.detach(ctx, id, op, errStillRunning, f)
}

// errStillRunning is bounded's error past the deadline, with
// context.DeadlineExceeded: f still runs, and what it writes its caller
// must not read.
var errStillRunning = errors.New("still running after the deadline")

// detach is complete (late ErrStillCompleting) and bounded (late
// errStillRunning).
func (s *Service) detach(ctx context.Context, id, op string, late error, f func(context.Context) error) error {
	cctx, cancel := completing(ctx)
	var state atomic.Int32
	done := make(chan error, 1)
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		defer cancel()
		err := f(cctx)
		if state.CompareAndSwap(completionRunning, completionEnded) {
			done <- err
			return
		}
		if err != nil {
			s.logger.ErrorContext(cctx, "tenant operation ended after its caller's deadline: failed",
				slog.String("op", op), slog.String("tenant_id", id), slog.String("error", err.Error()))
			return
		}
		s.logger.InfoContext(cctx, "tenant operation ended after its caller's deadline: done",
			slog.String("op", op), slog.String("tenant_id", id))
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && state.CompareAndSwap(completionRunning, completionAbandoned) {
		return fmt.Errorf("%s: %w: %w", op, late, ctx.Err())
	}
	return <-done
}

// Wait waits until no completion that went on past its caller's deadline
// (complete, bounded, a provisioning's clean-up, a key's withdrawal) runs,
// nor a cache invalidation of the catalog that did (storage.Cache.Wait),
// or ctx ends (its error, then). A process calls it before it closes the
// clients those completions use.
func (s *Service) Wait(ctx context.Context) error {
	idle := make(chan struct{})
	go func() {
		s.running.Wait()
		close(idle)
	}()
	select {
	case <-idle:
	case <-ctx.Done():
		return fmt.Errorf("wait for running completions: %w", ctx.Err())
	}
	// After the completions, which may have started invalidations.
	if c, ok := s.catalog.(interface{ Wait(context.Context) error }); ok {
		return c.Wait(ctx)
	}
	return nil
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
	// running counts the completions (complete) under way.
	running *sync.WaitGroup
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
	return &Service{catalog: c.Catalog, enqueuer: c.Enqueuer, documents: c.Documents, docDirs: c.DocumentDirs, pool: c.SchemaPool, pools: c.Pools, fair: c.Dispatcher, plans: c.Plans, logger: c.Logger,
		running: new(sync.WaitGroup)}
}

// layout returns the queue layout of the Enqueuer: the queues the
// tenant operations hold, drain, forget and read cover the shards it
// serves (tasks.Layout).
func (s *Service) layout() tasks.Layout { return s.enqueuer.Layout() }

// holdQueues returns the queues an operator's pause or a move holds
// tenant id in, and their releases lift, and an erasure forgets it in:
// the served ones and every other its tasks can be in under any shard
// count (tasks.Layout.HoldQueues), so that a hold or release made through
// a process with a smaller QUEUE_SHARDS_SERVED than the others' (while it
// is rolled out) also covers the shard the tenant's tasks go to once
// QUEUE_SHARDS changes. The first is the same for every process:
// settlePause's.
func (s *Service) holdQueues(id string) []string { return s.layout().HoldQueues(id, tasks.Queues) }

// suspendQueues is holdQueues for a suspension: the queues of ordinary
// work (tasks.WorkQueues).
func (s *Service) suspendQueues(id string) []string {
	return s.layout().HoldQueues(id, tasks.WorkQueues)
}

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
