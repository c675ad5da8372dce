package worker

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/tasks"
)

// Defaults of ServerOptions.
const (
	DefaultConcurrency      = 10
	DefaultShutdownTimeout  = 25 * time.Second
	DefaultNotReadyDelayMin = 15 * time.Second
	DefaultNotReadyDelayMax = 30 * time.Second
	// DefaultTaskCheckInterval is how long a processor sleeps when every
	// queue was empty (asynq sleeps half of it plus a random part of it,
	// 10-30 ms here). asynq's own default of 1 s puts a task enqueued on an
	// idle system half a second away from a worker on average; at 20 ms an
	// idle worker runs about 50 polls of 3 queues a second (about 150
	// cheap Lua calls), and pickup stays within tens of milliseconds.
	// With fair dispatch it is only the poll while the worker's
	// subscription to the dispatcher's announcements is down (IdleWait).
	DefaultTaskCheckInterval = 20 * time.Millisecond
	// DefaultDelayedTaskCheckInterval is how often scheduled and retry
	// tasks are moved to pending. asynq's default is 5 s; 1 s keeps short
	// retry delays (a tenant that resumed) close to their due time at the
	// cost of one small Lua script per queue per second.
	DefaultDelayedTaskCheckInterval = time.Second
)

// ServerOptions configures the asynq server. Zero values mean the defaults
// above.
type ServerOptions struct {
	// Concurrency is the number of tasks processed at once.
	Concurrency int
	// ShutdownTimeout is how long Shutdown waits for running handlers
	// before their ctx is cancelled and their tasks are re-queued. Keep it
	// below the orchestrator's kill grace period (Kubernetes: 30 s).
	ShutdownTimeout time.Duration
	// NotReadyDelayMin and NotReadyDelayMax bound the random delay before a
	// task whose tenant was not ready (ErrTenantNotReady) is tried again
	// (cmd/worker: NOT_READY_DELAY_MIN and NOT_READY_DELAY_MAX).
	NotReadyDelayMin, NotReadyDelayMax time.Duration
	// TaskCheckInterval and DelayedTaskCheckInterval: see the defaults.
	TaskCheckInterval        time.Duration
	DelayedTaskCheckInterval time.Duration
	// BaseContext, when set, is the parent of every handler's ctx.
	BaseContext func() context.Context
	// Layout is the queue layout served: every served shard of every
	// class (tasks.Layout.Weights). The zero value is one queue per class.
	Layout tasks.Layout
	// Classes, when set, are the queue classes served (of tasks.Queues),
	// every served shard of each with its class's weight: a worker
	// dedicated to some classes (WORKER_QUEUE_CLASSES). nil serves all.
	Classes []string
	// Records, when set, receives a per-tenant record of every tenant task
	// archived (records.go); nil records nothing.
	Records *tasks.TaskRecords
	// Logger receives asynq's logs and task errors; nil means
	// slog.Default().
	Logger *slog.Logger
	// RedisSentinel says the server's Redis client is a Sentinel failover
	// client (config.IsRedisSentinel): IdleWait's subscription then
	// follows the master at a failover (fair.IdleOptions.FollowFailover).
	RedisSentinel bool
}

// IdleWait makes the asynq server that o configures, on rdb, wait while
// idle for the fair dispatcher to announce work in the queues it serves
// (fair.IdleWaiter), instead of polling them every TaskCheckInterval: it
// adds the waiter's hook to rdb and subscribes. It returns o with
// TaskCheckInterval set to idleSpacing (asynq's sleep after a wait; o's
// interval becomes the poll while the subscription is down, and how long
// a queue found empty is not asked about again unless announced), and stop,
// which ends the subscription (the waiter itself is for its Stats: call
// RegisterIdleMetrics): call stop before the server's Shutdown, so
// that its processor is not held until the next recheck. recheck bounds a
// wait (0: fair.DefaultIdleRecheck).
func IdleWait(rdb redis.UniversalClient, o ServerOptions, recheck time.Duration) (ServerOptions, *fair.IdleWaiter, func()) {
	o = o.withDefaults()
	w := fair.NewIdleWaiter(rdb, o.ServedQueues(), fair.IdleOptions{Recheck: recheck, Poll: o.TaskCheckInterval, Logger: o.Logger, FollowFailover: o.RedisSentinel})
	rdb.AddHook(w.Hook())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	o.TaskCheckInterval = idleSpacing
	return o, w, func() {
		cancel()
		<-done
	}
}

// idleSpacing is asynq's TaskCheckInterval under IdleWait: it sleeps half
// of it to one and a half times it after every look that found nothing,
// which under IdleWait always follows a wait, so it only delays the look
// that an announcement started.
const idleSpacing = time.Millisecond

// withDefaults returns o with its zero values replaced by defaults.
func (o ServerOptions) withDefaults() ServerOptions {
	o.Concurrency = cmp.Or(o.Concurrency, DefaultConcurrency)
	o.ShutdownTimeout = cmp.Or(o.ShutdownTimeout, DefaultShutdownTimeout)
	o.NotReadyDelayMin = cmp.Or(o.NotReadyDelayMin, DefaultNotReadyDelayMin)
	o.NotReadyDelayMax = cmp.Or(o.NotReadyDelayMax, max(DefaultNotReadyDelayMax, o.NotReadyDelayMin))
	o.TaskCheckInterval = cmp.Or(o.TaskCheckInterval, DefaultTaskCheckInterval)
	o.DelayedTaskCheckInterval = cmp.Or(o.DelayedTaskCheckInterval, DefaultDelayedTaskCheckInterval)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// classes are the queue classes served: Classes, or every class.
func (o ServerOptions) classes() []string {
	if o.Classes == nil {
		return tasks.Queues
	}
	return o.Classes
}

// ServedQueues returns the asynq queues a server of opts serves, class by
// class in priority order as given, shard 0 first: what the worker
// registers with the fair dispatcher.
func (o ServerOptions) ServedQueues() []string { return o.Layout.ClassQueues(o.classes()) }

// ServerConfig returns the asynq server configuration of the worker:
// queues critical/default/low weighted 6/3/1 (each shard of a class with
// its class's weight, so the classes keep that proportion), ErrTenantNotReady retried
// after NotReadyDelayMin..Max without counting as a failure (IsFailure),
// other errors retried with asynq's exponential backoff, and asynq's logs
// and task errors sent to opts.Logger.
func ServerConfig(opts ServerOptions) asynq.Config {
	o := opts.withDefaults()
	queues := o.Layout.ClassWeights(o.classes())
	return asynq.Config{
		Concurrency:              o.Concurrency,
		BaseContext:              o.BaseContext,
		Queues:                   queues,
		IsFailure:                IsFailure,
		RetryDelayFunc:           retryDelay(o.NotReadyDelayMin, o.NotReadyDelayMax),
		ShutdownTimeout:          o.ShutdownTimeout,
		TaskCheckInterval:        o.TaskCheckInterval,
		DelayedTaskCheckInterval: o.DelayedTaskCheckInterval,
		ErrorHandler:             errorHandler(o.Logger, o.Records),
		Logger:                   NewAsynqLogger(o.Logger),
		LogLevel:                 asynqLogLevel(o.Logger),
	}
}

// leaseExpiredDelay is the retry delay of a task recovered from a crashed
// worker. asynq already waited for its lease to expire (30 s) and for its
// recoverer's next run (up to a minute); adding exponential backoff on top
// would only delay work that never failed.
const leaseExpiredDelay = time.Second

// retryDelay waits lo..hi for a tenant that is not ready, retries a task
// orphaned by a crashed worker almost at once, and uses asynq's exponential
// backoff for everything else.
func retryDelay(lo, hi time.Duration) asynq.RetryDelayFunc {
	return func(n int, err error, t *asynq.Task) time.Duration {
		if errors.Is(err, asynq.ErrLeaseExpired) {
			return leaseExpiredDelay
		}
		if errors.Is(err, ErrTenantNotReady) {
			if hi <= lo {
				return lo
			}
			return lo + rand.N(hi-lo)
		}
		return asynq.DefaultRetryDelayFunc(n, err, t)
	}
}

// errorHandler logs what the per-attempt log line cannot know: that this
// failure archives the task (skip retry, or retries exhausted); and then
// writes the tenant's record of the archived task when records is set.
func errorHandler(logger *slog.Logger, records *tasks.TaskRecords) asynq.ErrorHandler {
	return asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
		taskID, _ := asynq.GetTaskID(ctx)
		retried, _ := asynq.GetRetryCount(ctx)
		maxRetry, _ := asynq.GetMaxRetry(ctx)
		attrs := []any{
			slog.String("task_id", taskID),
			slog.String("task_type", t.Type()),
			slog.Int("retried", retried),
			slog.Int("max_retry", maxRetry),
			slog.String("error", err.Error()),
		}
		// The error handler runs outside the middleware chain, so the
		// envelope is opened again here: only for failed attempts.
		env := openEnvelope(t)
		if !env.System {
			attrs = append(attrs, slog.String("tenant_id", env.TenantID))
		}
		archived := archives(err, retried, maxRetry)
		if archived {
			recordArchive(ctx, records, logger, env, t, err, retried) // task records hook (records.go)
		}
		switch {
		case errors.Is(err, ErrTenantNotReady) && !archived:
			// It comes back: retried, or let go by asynq (RevokeTask) and
			// kept by the dispatcher or KeepLastAttempt. A wait met on
			// the last attempt that was not kept is archived unrun by
			// asynq, and logged as such below.
			logger.DebugContext(ctx, "task waits for its tenant", attrs...)
		case IsPermanent(err):
			logger.ErrorContext(ctx, "task archived without retry", attrs...)
		case retried >= maxRetry:
			logger.ErrorContext(ctx, "task archived: retries exhausted", attrs...)
		default:
			// The Log middleware already logged this attempt: at error,
			// or at warn as cut_off when asynq cancelled it (a lost
			// lease, a cancel from the dashboard).
			logger.DebugContext(ctx, "task failed, will retry", attrs...)
		}
	})
}
