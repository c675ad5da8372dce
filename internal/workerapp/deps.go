package workerapp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/invoicing/tenantworker/internal/backend"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/worker"
)

// deps are what the worker runs on: the shared backend plus what only the
// worker needs. close releases what open built.
type deps struct {
	*backend.Backend
	mailer   mailer.Mailer
	registry *prometheus.Registry
	metrics  *worker.Metrics
	breakers *worker.DatabaseBreakers
	listener net.Listener

	closers []func() error
}

// open builds the worker's dependencies from cfg (resolved), using what
// opts hands in instead. On error it releases whatever it built.
func open(ctx context.Context, cfg config.Config, logger *slog.Logger, opts Options) (_ *deps, err error) {
	// Before connecting to anything: a sender go-mail cannot put into
	// MAIL FROM as it is would fail every reminder.
	if err := mailer.CheckSender(cfg.MailFrom); err != nil {
		return nil, fmt.Errorf("MAIL_FROM: %w", err)
	}
	d := &deps{Backend: opts.Backend}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.close())
		}
	}()
	if d.Backend == nil {
		b, err := backend.Open(ctx, cfg, logger, backend.Options{})
		if err != nil {
			return nil, err
		}
		d.Backend = b
		d.closers = append(d.closers, b.Close)
	}

	// A documents directory the worker cannot write (a volume mounted
	// read-only, a directory its user may not write) would fail every
	// render at its write, retried until archived: refuse it now. A full
	// one is a warning: its renders are retried until there is room, and
	// the worker's other tasks need none.
	if w, ok := d.Documents.(writableChecker); ok {
		err := w.CheckWritable(ctx)
		switch {
		case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT):
			logger.WarnContext(ctx, "DOCUMENTS_DIR is full: renders fail and are retried until there is room",
				slog.String("error", err.Error()))
		case err != nil:
			return nil, fmt.Errorf("DOCUMENTS_DIR: %w", err)
		}
	}

	d.mailer = opts.Mailer
	if d.mailer == nil {
		mode, err := mailer.ParseTLSMode(cfg.SMTPTLS)
		if err != nil {
			return nil, fmt.Errorf("SMTP_TLS: %w", err)
		}
		m, err := mailer.FromConfig(cfg.SMTPURL, cfg.OutboxDir, mailer.WithTLSMode(mode))
		if err != nil {
			return nil, fmt.Errorf("mailer (SMTP_URL/SMTP_TLS/OUTBOX_DIR): %w", err)
		}
		d.mailer = m
	}

	// Metrics.
	d.registry = opts.Registry
	if d.registry == nil {
		d.registry = prometheus.NewRegistry()
		d.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if d.metrics, err = worker.NewMetrics(d.registry); err != nil {
		return nil, err
	}
	// A circuit breaker per database: a database found unreachable is
	// probed, not dialed by each of its tasks (docs/architecture.md P27).
	bopts := breakerOptions(cfg)
	bopts.Probe, bopts.Locate, bopts.Logger, bopts.Registerer = d.Pools.Ping, d.Pools.DatabaseOf, logger, d.registry
	if d.breakers, err = worker.NewDatabaseBreakers(bopts); err != nil {
		return nil, err
	}
	d.closers = append(d.closers, d.breakers.Close)
	if err := worker.RegisterQueueMetrics(d.registry, d.Inspector, d.Redis, d.Layout.Queues()); err != nil {
		return nil, err
	}
	if d.Dispatcher != nil {
		if err := d.registry.Register(d.AdmissionWait); err != nil {
			return nil, fmt.Errorf("register fair dispatch metrics: %w", err)
		}
		if err := d.registry.Register(d.Dispatcher.NewCollector(d.Layout.Queues(), 0, logger)); err != nil {
			return nil, fmt.Errorf("register fair dispatch metrics: %w", err)
		}
	}
	if err := worker.RegisterLaneMetrics(d.registry, d.Lanes); err != nil {
		return nil, err
	}
	cache := d.Catalog
	if err := worker.RegisterCacheMetrics(d.registry, func() (uint64, uint64) {
		s := cache.Stats()
		return uint64(s.LocalHits + s.RedisHits), uint64(s.Misses)
	}); err != nil {
		return nil, err
	}

	// Health server listener, last: a bound port means the worker is up.
	d.listener = opts.Listener
	if d.listener == nil {
		addr := cfg.HTTPAddrOr(config.DefaultWorkerHTTPAddr)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("HTTP_ADDR: %w", err)
		}
		d.listener = ln
	}
	// http.Server.Shutdown closes the listener; closing it again is harmless.
	d.closers = append(d.closers, func() error { _ = d.listener.Close(); return nil })
	return d, nil
}

// writableChecker is a document store that can check that it can write
// documents (storage.FS).
type writableChecker interface {
	CheckWritable(ctx context.Context) error
}

// close releases what open built, in reverse order; a backend handed in
// through Options is left open.
func (d *deps) close() error {
	var errs []error
	for i := len(d.closers) - 1; i >= 0; i-- {
		errs = append(errs, d.closers[i]())
	}
	d.closers = nil
	return errors.Join(errs...)
}

// breakerOptions are the timings of the database breakers that cfg sets
// (DB_BREAKER_PROBE_MIN, DB_BREAKER_PROBE_MAX, DB_BREAKER_PROBE_TIMEOUT);
// open adds the probe, the logger and the metrics.
func breakerOptions(cfg config.Config) worker.BreakerOptions {
	return worker.BreakerOptions{ProbeMin: cfg.DBBreakerProbeMin, ProbeMax: cfg.DBBreakerProbeMax, ProbeTimeout: cfg.DBBreakerProbeTimeout}
}
