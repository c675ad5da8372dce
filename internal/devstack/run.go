package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/invoicing/tenantworker/internal/backend"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/internal/workerapp"
)

// Shutdown bounds.
const (
	// appShutdownTimeout is how long running tasks and HTTP requests get
	// on Ctrl-C: a dev stack should stop within a few seconds.
	appShutdownTimeout = 3 * time.Second
	// stopTimeout bounds stopping the throwaway PostgreSQL.
	stopTimeout = 10 * time.Second
)

// Run starts the dev stack (see the package documentation), prints the
// banner once the demo tenants are active, and runs until ctx is done or a
// component fails. It then stops everything and removes the throwaway
// database. It returns nil after a shutdown caused by ctx.
func Run(ctx context.Context, opts Options) (err error) {
	opts = opts.withDefaults()
	log := opts.Logger
	defer func() {
		// Ctrl-C while starting (initdb, migrations) is a stop, not a failure.
		if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			log.Info("dev stack interrupted while starting", "error", err)
			err = nil
		}
	}()

	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return fmt.Errorf("data directory %s: %w", opts.DataDir, err)
	}
	docsDir, outboxDir := filepath.Join(dataDir, "documents"), filepath.Join(dataDir, "outbox")
	for _, dir := range []string{dataDir, docsDir, outboxDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create data directory: %w", err)
		}
	}

	// Ports first: a busy port is the most likely mistake, and should be
	// reported before anything is started.
	httpLn, err := listen(opts.HTTPAddr, "http-addr")
	if err != nil {
		return err
	}
	defer httpLn.Close() // enqueueapp closes it too; a second Close is harmless
	workerLn, err := listen(opts.WorkerAddr, "worker-addr")
	if err != nil {
		return err
	}
	defer workerLn.Close()

	mr, err := startRedis()
	if err != nil {
		return err
	}
	defer mr.Close()
	log.Info("in-process redis started", "addr", mr.Addr())

	db, err := openDatabase(ctx, opts.DatabaseURL, dataDir, log)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
		defer cancel()
		err = errors.Join(err, db.stop(sctx))
	}()

	cfg, err := config.Config{
		DatabaseURL:       db.url,
		RedisURL:          "redis://" + mr.Addr(),
		DomainSuffix:      opts.DomainSuffix,
		AdminToken:        opts.AdminToken,
		WorkerConcurrency: workerConcurrency,
		OverdueSweepCron:  opts.SweepCron,
		SchedulerEnabled:  true,
		ShutdownTimeout:   appShutdownTimeout,
		OutboxDir:         outboxDir,
		DocumentsDir:      docsDir,
		DBMaxConns:        workerConcurrency + poolHeadroom,
		DashboardWritable: true, // dev: retry and delete tasks from the dashboard
		FairDispatch:      true, // as the binaries' default (FAIR_DISPATCH)
		Dev:               true, // an ADMIN_TOKEN of any length
	}.Resolve()
	if err != nil {
		return fmt.Errorf("dev configuration: %w", err)
	}

	// One backend (pool, migrated catalog and cache, documents, enqueuer,
	// tenant lifecycle) for the worker, the enqueue service and the demo
	// tenants alike.
	b, err := backend.Open(ctx, cfg, log, backend.Options{})
	if err != nil {
		return err
	}
	defer b.Close()

	// The worker and the enqueue service, each until appCtx ends.
	appCtx, stopApps := context.WithCancel(ctx)
	var apps sync.WaitGroup
	defer func() {
		// Before the deferred closes above: the apps use what they close.
		stopApps()
		apps.Wait()
	}()
	failed := make(chan error, 2)
	workerUp, httpUp := make(chan net.Addr, 1), make(chan net.Addr, 1)
	apps.Go(func() {
		err := workerapp.RunWith(appCtx, cfg, log.With("app", "worker"), workerapp.Options{
			Backend:  b,
			Listener: workerLn,
			Ready:    func(a net.Addr) { workerUp <- a },
		})
		failed <- appResult(appCtx, "worker", err)
	})
	apps.Go(func() {
		err := enqueueapp.RunWith(appCtx, cfg, log.With("app", "enqueue"), enqueueapp.Options{
			Backend:  b,
			Listener: httpLn,
			Ready:    func(a net.Addr) { httpUp <- a },
		})
		failed <- appResult(appCtx, "enqueue service", err)
	})

	var workerAddr, httpAddr net.Addr
	for workerAddr == nil || httpAddr == nil {
		select {
		case workerAddr = <-workerUp:
		case httpAddr = <-httpUp:
		case err := <-failed:
			stopApps()
			return err
		case <-ctx.Done():
			return nil
		}
	}

	// Provision while watching the apps: a failing app ends the wait.
	provCtx, cancelProv := context.WithCancelCause(appCtx)
	provDone, watcherDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watcherDone)
		select {
		case err := <-failed:
			cancelProv(err)
		case <-provDone:
		}
	}()
	info, err := provisionAll(provCtx, opts, b)
	close(provDone)
	<-watcherDone
	if appErr := context.Cause(provCtx); appErr != nil && !errors.Is(appErr, context.Canceled) {
		stopApps()
		return appErr // an app failed, during or right after provisioning
	}
	cancelProv(nil)
	if err != nil {
		stopApps()
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	info.HTTPAddr = httpAddr.String()
	info.Dashboard = "http://localhost:" + portOf(httpAddr) + "/admin/dashboard/"
	info.AdminToken = opts.AdminToken
	info.WorkerAddr = workerAddr.String()
	info.RedisAddr = mr.Addr()
	info.DatabaseURL = db.url
	info.DataDir, info.DocumentsDir, info.OutboxDir = dataDir, docsDir, outboxDir
	info.PGDir = db.dir()
	for slug, t := range info.Tenants {
		t.API = tenantAPI(slug, opts.DomainSuffix, httpAddr)
		info.Tenants[slug] = t
	}
	info.API = info.Tenants[demoTenants[0].slug].API
	order := make([]string, len(demoTenants))
	for i, d := range demoTenants {
		order[i] = d.slug
	}
	if err := writeBanner(opts.Stdout, info, order); err != nil {
		return err
	}
	if opts.Ready != nil {
		opts.Ready(info)
	}

	select {
	case <-ctx.Done():
		log.Info("dev stack shutting down")
		return nil
	case err := <-failed:
		stopApps()
		return err
	}
}

// appResult turns an app's return into the error Run reports: an app that
// returns while the stack should run has failed, even with a nil error.
func appResult(ctx context.Context, name string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if ctx.Err() == nil {
		return fmt.Errorf("%s stopped unexpectedly", name)
	}
	return nil
}

// provisionAll provisions (or reuses) every demo tenant, waits until each
// is active, seeds it, and returns their details (without URLs).
func provisionAll(ctx context.Context, opts Options, b *backend.Backend) (Info, error) {
	info := Info{Tenants: make(map[string]TenantInfo, len(demoTenants))}
	var all []provisioned
	for _, d := range demoTenants {
		p, err := provisionDemo(ctx, b.Tenancy, b.Catalog, d)
		if deleting := (*beingDeletedError)(nil); errors.As(err, &deleting) {
			// Left deleting by an earlier run on this DATABASE_URL that
			// stopped before its destroy ran: the destroy was in that
			// run's Redis. Erased, it is provisioned again, as a run
			// after the destroy would.
			opts.Logger.Info("demo tenant left being deleted by an earlier run: finishing its deletion, then provisioning it again",
				"slug", d.slug, "tenant_id", deleting.tenant.ID)
			if err = finishDeletion(ctx, b.Tenancy, b.Postgres, deleting.tenant, opts.ActivateTimeout); err == nil {
				p, err = provisionDemo(ctx, b.Tenancy, b.Catalog, d)
			}
		}
		if err != nil {
			return info, err
		}
		all = append(all, p)
	}
	now := time.Now()
	for i, p := range all {
		d := demoTenants[i]
		// The catalog itself, not the cache: the worker activates the
		// tenant through its own cache, and this one may hold the
		// provisioning row for a moment.
		t, err := waitActive(ctx, b.Postgres, p.tenant.ID, opts.ActivateTimeout)
		if err != nil {
			return info, err
		}
		// Where the tenant is placed (main, unless TENANT_DATABASES or the
		// catalog name other databases).
		pool, err := b.Pools.ForTenant(ctx, t)
		if err != nil {
			return info, err
		}
		seeded, err := seedTenant(ctx, pool, t, d.data, now)
		if err != nil {
			return info, err
		}
		inv, err := firstInvoice(ctx, pool, t)
		if err != nil {
			return info, err
		}
		opts.Logger.Info("demo tenant ready", "slug", t.Slug, "tenant_id", t.ID, "reused", p.reused, "seeded", seeded)
		info.Tenants[d.slug] = TenantInfo{ID: t.ID, APIKey: p.apiKey, Reused: p.reused, Invoice: inv}
	}
	return info, nil
}
