// Package workerapp is the worker application: on the shared backend
// (package backend: pools, catalog and cache, documents, enqueuer, tenant
// lifecycle) it adds the mailer, the task metrics, the task handlers and
// mux (package worker), the asynq server, the sweep scheduler loop and the
// health/metrics HTTP server, runs them until its context ends, and shuts
// them down in order. cmd/worker is a thin main around Run.
package workerapp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/backend"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// httpShutdownTimeout bounds the health server's graceful shutdown.
const httpShutdownTimeout = 5 * time.Second

// staleMoveInterval is how often a worker looks for the holds of tenant
// moves whose process died (tenancy.Service.WatchStaleMoves).
const staleMoveInterval = 30 * time.Second

// modeKeepInterval is how often a worker without fair dispatch records its
// dispatch mode again (fair.KeepMode): a Redis that lost its data lost
// the record.
const modeKeepInterval = 5 * time.Second

// Options lets a caller (the dev mode, tests) hand in what it built itself.
// Every nil field is built from the Config; what Options hands in is never
// closed by Run.
type Options struct {
	// Backend replaces the one Run would open from the Config (the dev
	// stack shares one between the worker and the enqueue service).
	Backend *backend.Backend
	// Mailer replaces mailer.FromConfig(SMTP_URL, OUTBOX_DIR, SMTP_TLS).
	Mailer mailer.Mailer
	// Listener replaces net.Listen("tcp", HTTP_ADDR); Run closes it.
	Listener net.Listener
	// Registry is served on /metrics and receives the worker's metrics;
	// nil means a fresh registry with the Go and process collectors.
	Registry *prometheus.Registry
	// Server adjusts the asynq server options after they were derived from
	// the Config (tests shorten delays).
	Server func(*worker.ServerOptions)
	// Ready is called with the health server's address once the worker
	// processes tasks and the server accepts connections.
	Ready func(addr net.Addr)
}

// Run runs the worker from cfg, which must be resolved
// (config.Config.Resolve), until ctx is cancelled, then shuts down
// gracefully. It returns nil after a clean shutdown.
func Run(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	return RunWith(ctx, cfg, logger, Options{})
}

// RunWith is Run with parts handed in through opts.
//
// Shutdown, once ctx is done: /readyz turns 503, the scheduler loop stops,
// the asynq server stops fetching and waits up to SHUTDOWN_TIMEOUT for
// running handlers (then cancels their ctx; asynq re-queues their tasks),
// the health server stops, and the cache, Redis client and pools close.
func RunWith(ctx context.Context, cfg config.Config, logger *slog.Logger, opts Options) (err error) {
	if logger == nil {
		logger = slog.Default()
	}
	warnReminderSendHour(ctx, cfg, logger)
	d, err := open(ctx, cfg, logger, opts)
	if err != nil {
		if opts.Listener != nil {
			// Run closes it (Options.Listener), also when the worker does
			// not start: the caller's port is free again (a second close
			// of one open already closed is harmless).
			_ = opts.Listener.Close()
		}
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// SIGTERM while still connecting or migrating: a stop, not a
			// failure.
			logger.Info("worker stopped while starting", slog.String("reason", err.Error()))
			return nil
		}
		return err
	}
	defer func() { err = errors.Join(err, d.close()) }()

	// Temporary files of document writes that a killed worker left behind.
	cleanCtx, stopClean := context.WithCancel(ctx)
	var cleanWG sync.WaitGroup
	if s, ok := d.Documents.(staleTempRemover); ok {
		cleanWG.Go(func() { removeStaleTemp(cleanCtx, s, logger) })
	}
	defer func() { stopClean(); cleanWG.Wait() }()

	handlers := &worker.Handlers{
		Pool:      d.Pool,
		Pools:     d.Pools,
		Catalog:   d.Catalog,
		Documents: d.Documents,
		Mailer:    d.mailer,
		Enqueuer:  d.Enqueuer,
		Tenancy:   d.Tenancy,
		MailFrom:  cfg.MailFrom,

		ReminderSendHour: cfg.ReminderSendHour,

		PDFMaxLines:     cfg.PDFMaxLines,
		PDFMaxLineBytes: int64(cfg.PDFMaxLineBytes),
		PDFMaxBytes:     int64(cfg.PDFMaxBytes),
		PDFMaxPages:     cfg.PDFMaxPages,
	}
	muxOpts := worker.MuxOptions{Logger: logger, Metrics: d.metrics, DatabaseSlots: cfg.TenantDBMaxTasks, Redis: d.Redis, Breakers: d.breakers}
	var reporter *fair.Reporter
	if d.Dispatcher != nil {
		reporter = d.Dispatcher.NewReporter(logger)
		muxOpts.Reporter, muxOpts.Parker = reporter, d.Dispatcher
	}
	mux := worker.NewServeMux(handlers, muxOpts)

	serverOpts := serverOptions(cfg)
	serverOpts.Layout = d.Layout
	serverOpts.Records = d.TaskRecords
	serverOpts.Logger = logger
	serverOpts.RedisSentinel = config.IsRedisSentinel(d.RedisConnOpt)
	if opts.Server != nil {
		opts.Server(&serverOpts)
	}
	// With fair dispatch an idle worker waits for the dispatcher's
	// announcements instead of polling every TASK_CHECK_INTERVAL.
	stopIdle := func() {}
	if d.Dispatcher != nil {
		var waiter *fair.IdleWaiter
		serverOpts, waiter, stopIdle = worker.IdleWait(d.Redis, serverOpts, cfg.IdleRecheckInterval)
		if err := worker.RegisterIdleMetrics(d.registry, waiter.Stats); err != nil {
			stopIdle()
			return err
		}
	}
	// asynq's recoverer archives a task whose lease expired on its last
	// attempt (its worker killed) without the error handler, which writes
	// the tenant's record of every other archived task: this hook writes
	// that one's. Added before the server starts: its recoverer runs at
	// once.
	d.Redis.AddHook(worker.RecordRecoveredArchives(d.TaskRecords, d.Catalog, logger))
	srv := asynq.NewServerFromRedisClient(d.Redis, worker.ServerConfig(serverOpts))
	if err := srv.Start(mux); err != nil {
		stopIdle()
		return fmt.Errorf("start task server: %w", err)
	}
	srvRunning := true
	stopServer := func() {
		if srvRunning {
			srvRunning = false
			stopIdle()
			srv.Shutdown()
			if reporter != nil {
				// The reports of the last tasks, before Redis closes,
				// also those of handlers the server gave up on, which
				// return after its Shutdown (fair.Reporter.Attempt).
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				reporter.Close(rctx)
				cancel()
			}
		}
	}
	defer stopServer()

	// Fair dispatch: this worker's slots size how much the dispatcher keeps
	// pending in asynq's queues; the heartbeat also admits what fits.
	memberCtx, stopMember := context.WithCancel(context.WithoutCancel(ctx))
	var memberWG sync.WaitGroup
	if d.Dispatcher != nil {
		m := membership(memberID(), serverOpts.Layout, serverOpts.ServedQueues(), serverOpts.Concurrency)
		memberWG.Go(func() { d.Dispatcher.Serve(memberCtx, m, logger) })
	} else {
		// Without fair dispatch nothing else records the mode again
		// after Redis lost its data, nor puts the served queues back into
		// asynq's set of queues after the dashboard deleted one.
		memberWG.Go(func() {
			fair.KeepMode(memberCtx, d.Redis, fair.ModePlain, modeKeepInterval, logger, serverOpts.ServedQueues()...)
		})
	}
	defer func() { stopMember(); memberWG.Wait() }()

	// A tenant move killed outright leaves its hold on the tenant's queue:
	// released once no move holds the tenant's move lock.
	moveCtx, stopMoves := context.WithCancel(ctx)
	var moveWG sync.WaitGroup
	if d.Dispatcher != nil && d.Tenancy != nil {
		moveWG.Go(func() { d.Tenancy.WatchStaleMoves(moveCtx, staleMoveInterval) })
	}
	defer func() { stopMoves(); moveWG.Wait() }()

	var draining atomic.Bool
	health := newHealthServer(newHealthHandler(d, &draining, logger), defaultHealthTimeouts, logger)
	httpErr := make(chan error, 1)
	go func() { httpErr <- health.Serve(d.listener) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), httpShutdownTimeout)
		defer cancel()
		_ = health.Shutdown(sctx)
	}()

	schedCtx, stopScheduler := context.WithCancel(ctx)
	defer stopScheduler()
	var schedWG sync.WaitGroup
	if cfg.SchedulerEnabled {
		schedWG.Go(func() {
			err := tasks.RunScheduler(schedCtx, d.Enqueuer, cfg.OverdueSweepCron, tasks.SchedulerOptions{Logger: logger})
			if err != nil {
				logger.Error("sweep scheduler", slog.String("error", err.Error()))
			}
		})
		if cfg.DocumentsSweepCron != config.DocumentsSweepOff {
			schedWG.Go(func() {
				err := tasks.RunScheduler(schedCtx, d.Enqueuer, cfg.DocumentsSweepCron, tasks.SchedulerOptions{Logger: logger,
					Var: tasks.DocumentsCronVar, Task: func(tick int64) tasks.Payload { return tasks.SweepDocuments{Tick: tick} }})
				if err != nil {
					logger.Error("documents sweep scheduler", slog.String("error", err.Error()))
				}
			})
		}
	}

	logger.Info("worker started",
		slog.String("http_addr", d.listener.Addr().String()),
		slog.Int("concurrency", serverOpts.Concurrency),
		slog.String("queue_shards", serverOpts.Layout.String()),
		slog.String("queues", strings.Join(serverOpts.ServedQueues(), ",")),
		slog.Bool("scheduler", cfg.SchedulerEnabled),
		slog.Bool("idle_waits_for_announcements", d.Dispatcher != nil),
		slog.String("sweep_schedule", cfg.OverdueSweepCron),
		slog.Int("reminder_send_hour", cfg.ReminderSendHour),
		slog.String("documents_sweep_schedule", cfg.DocumentsSweepCron))
	if opts.Ready != nil {
		opts.Ready(d.listener.Addr())
	}

	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("worker shutting down", slog.Duration("shutdown_timeout", serverOpts.ShutdownTimeout))
	case err := <-httpErr:
		runErr = fmt.Errorf("health server: %w", err)
		logger.Error("worker stopping", slog.String("error", runErr.Error()))
	}
	draining.Store(true)
	stopScheduler()
	schedWG.Wait()
	stopServer()
	stopMember()
	memberWG.Wait()
	logger.Info("worker stopped")
	return runErr
}

// warnReminderSendHour logs a warning when REMINDER_SEND_HOUR defers the
// sweep's reminders and OVERDUE_SWEEP_CRON does not fire every hour
// (tasks.FiresEveryHour): a tenant in whose time zone every sweep runs
// before the hour would never get the sweep's reminders. It judges this
// worker's own schedule, whether or not it runs the scheduler.
func warnReminderSendHour(ctx context.Context, cfg config.Config, logger *slog.Logger) {
	if cfg.ReminderSendHour == 0 {
		return
	}
	s, err := tasks.ParseSchedule(cfg.OverdueSweepCron)
	if err != nil || tasks.FiresEveryHour(s) {
		return // an invalid schedule is Resolve's to refuse
	}
	logger.WarnContext(ctx, "REMINDER_SEND_HOUR is set but OVERDUE_SWEEP_CRON does not run every hour: "+
		"a tenant whose every sweep comes before that hour of its day gets no reminders from the sweep",
		slog.Int("reminder_send_hour", cfg.ReminderSendHour), slog.String("sweep_schedule", cfg.OverdueSweepCron))
}

// staleTempRemover is a document store that can remove the temporary
// files of writes a killed process left behind (storage.FS).
type staleTempRemover interface {
	RemoveStaleTemp(ctx context.Context, cutoff time.Time) (int, error)
}

// removeStaleTemp removes the temporary files of document writes older
// than storage.StaleTempAge (a younger one may be another process's write
// in progress: DOCUMENTS_DIR is shared) and logs what it did. It runs
// beside the task server at start-up: it lists every tenant's temporary
// directory, and a store an older release wrote is walked whole until a
// walk finds none of its temporary files left (storage.FS.RemoveStaleTemp).
func removeStaleTemp(ctx context.Context, s staleTempRemover, logger *slog.Logger) {
	n, err := s.RemoveStaleTemp(ctx, time.Now().Add(-storage.StaleTempAge))
	if n > 0 {
		logger.InfoContext(ctx, "removed stale temporary documents", slog.Int("removed", n))
	}
	if err != nil && ctx.Err() == nil {
		logger.WarnContext(ctx, "remove stale temporary documents", slog.String("error", err.Error()))
	}
}

// membership is how a worker of concurrency slots registers with the fair
// dispatcher under layout: in each of queues (those it serves), with its
// slots divided by the shards of a class (rounded up). The dispatcher keeps about one
// pending task per registered slot in each queue, and a quiet tenant's
// task waits behind that depth; registering every slot in each of N
// shards would make the depth, summed over a class, N times the
// worker's concurrency. Divided, a class keeps about the depth of one
// queue.
func membership(id string, layout tasks.Layout, queues []string, concurrency int) fair.Membership {
	n := layout.Served()
	return fair.Membership{ID: id, Queues: queues, Concurrency: (concurrency + n - 1) / n}
}

// memberID names this worker process in the dispatcher's heartbeats.
func memberID() string {
	host, err := os.Hostname()
	if err != nil {
		host = "worker"
	}
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), rand.Text()[:8])
}

// serverOptions returns the asynq server options the Config sets
// (WORKER_CONCURRENCY, SHUTDOWN_TIMEOUT, TASK_CHECK_INTERVAL,
// WORKER_QUEUE_CLASSES, NOT_READY_DELAY_MIN and _MAX); RunWith adds what
// it opened (the queue layout, task records, logger, Redis client kind).
func serverOptions(cfg config.Config) worker.ServerOptions {
	return worker.ServerOptions{
		Concurrency:       cfg.WorkerConcurrency,
		ShutdownTimeout:   cfg.ShutdownTimeout,
		TaskCheckInterval: cfg.TaskCheckInterval,
		Classes:           cfg.WorkerQueueClasses,
		NotReadyDelayMin:  cfg.NotReadyDelayMin,
		NotReadyDelayMax:  cfg.NotReadyDelayMax,
	}
}
