package enqueueapp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/backend"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/storage"
)

// HTTP server limits.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
	// writeTimeoutMargin keeps the write timeout this far above
	// REQUEST_TIMEOUT and ADMIN_REQUEST_TIMEOUT, so that a request that
	// runs out of time still gets its 503.
	writeTimeoutMargin = 15 * time.Second
)

// modeKeepInterval is how often an enqueue service without fair dispatch
// records its dispatch mode again (fair.KeepMode): a Redis that lost its
// data lost the record.
const modeKeepInterval = 5 * time.Second

// Options lets a caller (the dev mode, tests) hand in what it built itself.
// Every nil field is built from the configuration; what Options hands in is
// never closed by Run.
type Options struct {
	// Backend replaces the one Run (or a CLI command) would open from the
	// configuration (the dev stack shares one between the worker and the
	// enqueue service).
	Backend *backend.Backend
	// Listener replaces net.Listen("tcp", HTTP_ADDR); Run closes it.
	Listener net.Listener
	// Registry receives the HTTP metrics and is served on /metrics; nil
	// means a fresh registry with the Go and process collectors.
	Registry *prometheus.Registry
	// Ready is called with the listening address once the server accepts
	// connections.
	Ready func(addr net.Addr)
}

// Run runs the enqueue service from cfg, which must be resolved
// (config.Config.Resolve), until ctx is cancelled, then shuts down
// gracefully. It returns nil after a clean shutdown, and when ctx ends
// while it still connects or migrates ("enqueue service stopped while
// starting").
func Run(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	return RunWith(ctx, cfg, logger, Options{})
}

// RunWith is Run with connections, stores or a listener handed in.
func RunWith(ctx context.Context, cfg config.Config, logger *slog.Logger, opts Options) error {
	addr := cfg.HTTPAddrOr(config.DefaultEnqueueHTTPAddr)
	if logger == nil {
		logger = slog.Default()
	}
	ln := opts.Listener
	if ln == nil {
		var err error
		// Listen first: a busy port is the most common start-up mistake and
		// deserves one clear line before any connection is made.
		if ln, err = listen(addr); err != nil {
			return err
		}
	}
	defer ln.Close()

	b, closeBackend, err := openBackend(ctx, cfg, logger, opts, false)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// SIGTERM while still connecting or migrating: a stop, not a
			// failure.
			logger.Info("enqueue service stopped while starting", slog.String("reason", err.Error()))
			return nil
		}
		return err
	}
	defer closeBackend()

	// Without fair dispatch nothing else records the mode again after
	// Redis lost its data (a fair dispatcher does as it puts the holds
	// back), and no worker may be running to do it.
	keepCtx, stopKeep := context.WithCancel(context.WithoutCancel(ctx))
	var keepWG sync.WaitGroup
	if b.Dispatcher == nil {
		keepWG.Go(func() { fair.KeepMode(keepCtx, b.Redis, fair.ModePlain, modeKeepInterval, logger) })
	}
	defer func() { stopKeep(); keepWG.Wait() }()

	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if b.AdmissionWait != nil {
		if err := reg.Register(b.AdmissionWait); err != nil {
			return fmt.Errorf("register fair dispatch metrics: %w", err)
		}
	}
	// The keys' last use, written in batches; Close (after the server has
	// stopped) writes the last batch.
	keyUsage := storage.NewKeyUsage(b.Catalog, storage.KeyUsageOptions{Logger: logger})
	defer keyUsage.Close()
	handler := httpapi.New(httpapi.Options{
		Catalog:               b.Catalog,
		Tenancy:               b.Tenancy,
		Documents:             b.Documents,
		Pool:                  b.Pool,
		Pools:                 b.Pools,
		Enqueuer:              b.Enqueuer,
		TaskRecords:           b.TaskRecords,
		KeyUsage:              keyUsage,
		Redis:                 b.Redis,
		RedisConnOpt:          b.RedisConnOpt,
		DomainSuffix:          cfg.DomainSuffix,
		AdminToken:            cfg.AdminToken,
		AuthFailuresPerMinute: cfg.AuthFailuresPerMinute,
		RequestTimeout:        cfg.RequestTimeout,
		AdminRequestTimeout:   cfg.AdminRequestTimeout,
		TenantDBConns:         cfg.APITenantDBConns,
		ClientIPHeader:        cfg.ClientIPHeader,
		AllowTenantHeader:     cfg.AllowTenantHeader,
		DashboardWritable:     cfg.DashboardWritable,
		Logger:                logger,
		Registry:              reg,
	})
	defer handler.Close()

	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      max(writeTimeout, max(cfg.RequestTimeout, cfg.AdminRequestTimeout)+writeTimeoutMargin),
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if cfg.AdminToken == "" {
		logger.Warn("ADMIN_TOKEN is not set: admin routes and the dashboard are disabled")
	}
	if cfg.AllowTenantHeader {
		logger.Warn("ALLOW_TENANT_HEADER is on: X-Tenant selects the tenant when Host is not a tenant host (development only)")
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("enqueue service listening", "addr", ln.Addr().String(), "domain_suffix", cfg.DomainSuffix)
	if opts.Ready != nil {
		opts.Ready(ln.Addr())
	}

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("enqueue service shutting down", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		<-served
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("enqueue service stopped")
	return nil
}

// openBackend returns opts.Backend (closing nothing), or opens one from cfg
// with the enqueue service's autopipelining (REDIS_AUTOPIPELINE) and a
// Redis client whose commands end at their request's deadline
// (backend.Options.ContextTimeouts), and returns its Close. A one-shot
// command's backend leaves a missing DOCUMENTS_DIR missing
// (backend.Options.ExistingDocumentsDir); the service's creates it.
func openBackend(ctx context.Context, cfg config.Config, logger *slog.Logger, opts Options, oneShot bool) (*backend.Backend, func() error, error) {
	if opts.Backend != nil {
		return opts.Backend, func() error { return nil }, nil
	}
	b, err := backend.Open(ctx, cfg, logger, backend.Options{AutoPipeline: cfg.RedisAutoPipeline, ContextTimeouts: true, ExistingDocumentsDir: oneShot})
	if err != nil {
		return nil, nil, err
	}
	return b, b.Close, nil
}

// listen opens addr, turning "address already in use" into one clear line;
// any other error names the setting the address came from.
func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("listen on %s: address already in use (another process holds the port; set HTTP_ADDR or --addr)", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s (HTTP_ADDR or --addr): %w", addr, err)
	}
	return ln, nil
}
