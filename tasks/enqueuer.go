package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/tenantctx"
)

// maxTaskIDLen bounds task ids accepted from callers (they come from URLs).
const maxTaskIDLen = 256

// MaxBatch bounds the payloads of one EnqueueMany call.
const MaxBatch = 1000

// enqueueAttempts bounds the enqueue/inspect/delete loop of the plain path
// when another producer races on the same task id.
const enqueueAttempts = 4

// Enqueuer is the one place producers enqueue tasks: the HTTP API, the
// scheduler, the sweep fan-out, the lifecycle and the CLI. With admission
// (WithAdmission) a tenant's tasks wait in its backlog and enter asynq in
// a fair order (package fair, P13 in docs/architecture.md); without it, or
// for system tasks, they go straight into asynq's queues. It is safe for
// concurrent use.
type Enqueuer struct {
	client    *asynq.Client
	inspector *asynq.Inspector
	logger    *slog.Logger
	admission *Admission
	records   *TaskRecords // nil: no per-tenant archive records (records.go)
	layout    Layout       // queue classes to queues (shards.go)
	// rdb, when set (WithRedis), replaces a finished task of the plain
	// path only while it is still finished (deleteFinishedScript).
	rdb redis.UniversalClient
	// lookups holds a token for each TenantTask look-up running, those
	// whose callers gave up included (see TenantTask).
	lookups chan struct{}
	// enqueues holds a token for each Enqueue and EnqueueMany call
	// running, those whose callers gave up included, and running counts
	// them for Wait (detach.go).
	enqueues chan struct{}
	running  *calls
	late     *lateCalls
}

// maxLookups bounds the TenantTask look-ups that run at once, the ones
// whose callers stopped waiting included: as many as go-redis's default
// pool has connections (10 per CPU), which a look-up each holds while
// Redis does not answer.
var maxLookups = 10 * runtime.GOMAXPROCS(0)

// TenantLookup finds a tenant by id: the cached catalog.
type TenantLookup interface {
	TenantByID(ctx context.Context, id string) (tenantctx.Tenant, error)
}

// Admission makes an Enqueuer admit tenant tasks fairly.
type Admission struct {
	// Dispatcher keeps the backlogs; it must use the same Redis as the
	// asynq client.
	Dispatcher *fair.Dispatcher
	// Tenants resolves a task's tenant for its plan and limits.
	Tenants TenantLookup
	// Plans gives a plan's share and caps; nil means fair.DefaultPlans().
	Plans fair.Plans
}

// Option configures NewEnqueuer.
type Option func(*Enqueuer)

// WithAdmission makes the Enqueuer admit tenant tasks through a's
// dispatcher. It panics without a Dispatcher or Tenants: a wiring mistake.
func WithAdmission(a Admission) Option {
	if a.Dispatcher == nil || a.Tenants == nil {
		panic("tasks: WithAdmission needs a Dispatcher and Tenants")
	}
	if a.Plans == nil {
		a.Plans = fair.DefaultPlans()
	}
	return func(e *Enqueuer) { e.admission = &a }
}

// WithLayout makes the Enqueuer put tasks in the queues of l (shards per
// queue class); without it every class is one queue. Every process
// sharing a Redis must use the same layout (QUEUE_SHARDS).
func WithLayout(l Layout) Option {
	return func(e *Enqueuer) { e.layout = l }
}

// WithRedis gives the Enqueuer the Redis client of its asynq client and
// inspector (the same Redis), with which the plain path deletes a finished
// task it replaces only while that task is still finished: without it,
// two enqueues of the id at the same instant could each see the finished
// task, and the later one delete the new task the earlier one had just
// enqueued (both then answer Existing false), or fail on it once a worker
// took it.
func WithRedis(rdb redis.UniversalClient) Option {
	return func(e *Enqueuer) { e.rdb = rdb }
}

// Layout returns the queue layout the Enqueuer enqueues into and searches.
func (e *Enqueuer) Layout() Layout { return e.layout }

// spec returns p's Spec with its queue class replaced by the queue of p's
// tenant (shard 0 for a system task).
func (e *Enqueuer) spec(p Payload) Spec {
	spec := p.Spec()
	owner := ""
	if tp, ok := p.(TenantPayload); ok {
		owner = tp.Owner()
	}
	spec.Queue = e.layout.Queue(spec.Queue, owner)
	return spec
}

// EnqueueResult is the task an Enqueue call stands for.
type EnqueueResult struct {
	// Info describes the task: the new one, or the existing one that made
	// the enqueue a no-op. A task waiting in its tenant's backlog is
	// "pending", as it is once admitted.
	Info *asynq.TaskInfo
	// Existing is true when a task with the same id already existed and
	// was returned instead of enqueueing a new one (dedupe).
	Existing bool
}

// NewEnqueuer returns an Enqueuer over client and inspector, which must use
// the same Redis. A nil logger means slog.Default(). The caller closes
// client and inspector.
func NewEnqueuer(client *asynq.Client, inspector *asynq.Inspector, logger *slog.Logger, opts ...Option) *Enqueuer {
	if logger == nil {
		logger = slog.Default()
	}
	e := &Enqueuer{client: client, inspector: inspector, logger: logger, lookups: make(chan struct{}, maxLookups), enqueues: make(chan struct{}, maxEnqueues), running: new(calls), late: new(lateCalls)}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Fair reports whether tenant tasks go through fair admission.
func (e *Enqueuer) Fair() bool { return e.admission != nil }

// Enqueue validates p (Validate), encodes it and enqueues it with p.Spec(),
// built fresh for this call (never a shared options value: P4 in
// docs/architecture.md), in the queue of its class for its tenant (the
// Layout; I26 in docs/architecture.md).
//
// When a task with the same id exists (waiting in a backlog or in asynq),
// the spec's ConflictPolicy decides: KeepExisting returns the existing task
// (Existing is true); ReplaceFinished returns it while it is waiting,
// pending, active, scheduled or retrying, and replaces it once it completed
// or was archived; ReplaceFinishedFollowRunning returns a follow-up task
// (FollowUpID) instead of a running one.
//
// With admission, a tenant task past its tenant's waiting cap fails with
// an error matching fair.ErrBacklogFull (a *fair.FullError says when to
// retry); nothing is enqueued.
func (e *Enqueuer) Enqueue(ctx context.Context, p Payload) (EnqueueResult, error) {
	if err := Validate(p); err != nil {
		return EnqueueResult{}, err
	}
	res, err := e.detached(ctx, "enqueue "+p.TypeName(), []Payload{p}, func(ctx context.Context) ([]EnqueueResult, error) {
		r, err := e.enqueue(ctx, p)
		if err != nil {
			return nil, err
		}
		return []EnqueueResult{r}, nil
	})
	if err != nil {
		return EnqueueResult{}, err
	}
	return res[0], nil
}

// enqueue is Enqueue's work, on a validated payload.
func (e *Enqueuer) enqueue(ctx context.Context, p Payload) (EnqueueResult, error) {
	tp, isTenant := p.(TenantPayload)
	if !isTenant {
		res, err := e.enqueuePlain(ctx, p)
		if err == nil && !res.Existing && e.admission != nil && res.Info.State == asynq.TaskStatePending {
			e.announce(ctx, p, res.Info)
		}
		return res, err
	}
	if e.admission == nil {
		res := []EnqueueResult{{}}
		var err error
		if res[0], err = e.enqueuePlain(ctx, p); err != nil {
			return EnqueueResult{}, err
		}
		if err := e.followRunning(ctx, []Payload{p}, res); err != nil {
			return EnqueueResult{}, err
		}
		return res[0], nil
	}
	res, err := e.enqueueFair(ctx, tp.Owner(), []Payload{p})
	if err != nil {
		return EnqueueResult{}, err
	}
	return res[0], nil
}

// followRunning enqueues, without admission, the follow-up of every
// payload whose policy is ReplaceFinishedFollowRunning and whose existing
// task res reports running, and puts the follow-up's result in its place
// (new, or the follow-up already waiting). A follow-up that is itself
// running is returned as it is. With admission the dispatcher does this
// in the enqueue's own script call (fair.Task.FollowUp).
func (e *Enqueuer) followRunning(ctx context.Context, payloads []Payload, res []EnqueueResult) error {
	var idx []int
	var ups []Payload
	for i, p := range payloads {
		r := res[i]
		if r.Existing && r.Info != nil && r.Info.State == asynq.TaskStateActive && p.Spec().Conflict == ReplaceFinishedFollowRunning {
			idx = append(idx, i)
			ups = append(ups, followUp{p.(TenantPayload)})
		}
	}
	if len(ups) == 0 {
		return nil
	}
	out := make([]EnqueueResult, len(ups))
	for j, p := range ups {
		var err error
		if out[j], err = e.enqueuePlain(ctx, p); err != nil {
			return fmt.Errorf("enqueue follow-up of running task: %w", err)
		}
	}
	for j, i := range idx {
		res[i] = out[j]
	}
	return nil
}

// followUp is the follow-up of a payload's running task: the same payload
// under FollowUpID, ReplaceFinished.
type followUp struct{ TenantPayload }

// Spec implements Payload.
func (f followUp) Spec() Spec {
	s := f.TenantPayload.Spec()
	s.TaskID, s.Conflict = FollowUpID(s.TaskID), ReplaceFinished
	return s
}

// MarshalJSON encodes the payload itself.
func (f followUp) MarshalJSON() ([]byte, error) { return json.Marshal(f.TenantPayload) }

// EnqueueMany enqueues payloads of one tenant (at most MaxBatch, every one
// a TenantPayload owned by tenantID). With admission, the payloads of each
// queue go to the dispatcher in one script call, all or nothing: past the
// waiting cap none of them is accepted. Results are in payload order.
func (e *Enqueuer) EnqueueMany(ctx context.Context, tenantID string, payloads []Payload) ([]EnqueueResult, error) {
	if len(payloads) > MaxBatch {
		return nil, fmt.Errorf("%w: %d payloads in one batch, at most %d", ErrInvalidPayload, len(payloads), MaxBatch)
	}
	for _, p := range payloads {
		if err := Validate(p); err != nil {
			return nil, err
		}
		if tp, ok := p.(TenantPayload); !ok || tp.Owner() != tenantID {
			return nil, fmt.Errorf("%w: %s payload in a batch of tenant %s", ErrInvalidPayload, p.TypeName(), tenantID)
		}
	}
	return e.detached(ctx, fmt.Sprintf("enqueue %d tasks of tenant %s", len(payloads), tenantID), payloads, func(ctx context.Context) ([]EnqueueResult, error) {
		return e.enqueueMany(ctx, tenantID, payloads)
	})
}

// enqueueMany is EnqueueMany's work, on validated payloads.
func (e *Enqueuer) enqueueMany(ctx context.Context, tenantID string, payloads []Payload) ([]EnqueueResult, error) {
	if e.admission != nil {
		// The dispatcher follows running tasks in the same call (all or
		// nothing against the caps, follow-ups included).
		return e.enqueueFair(ctx, tenantID, payloads)
	}
	// One payload at a time, its follow-up (if its task runs) included:
	// on an error, out[:i] holds exactly what was done before it, never a
	// running task whose follow-up was not enqueued.
	out := make([]EnqueueResult, len(payloads))
	for i, p := range payloads {
		res, err := e.enqueuePlain(ctx, p)
		if err != nil {
			return out[:i], err
		}
		out[i] = res
		if err := e.followRunning(ctx, payloads[i:i+1], out[i:i+1]); err != nil {
			return out[:i], err
		}
	}
	return out, nil
}

// enqueueFair hands validated payloads of one tenant to the dispatcher,
// one call per queue, under the tenant's policy.
func (e *Enqueuer) enqueueFair(ctx context.Context, tenantID string, payloads []Payload) ([]EnqueueResult, error) {
	tenant, err := e.admission.Tenants.TenantByID(ctx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("enqueue for tenant %s: %w", tenantID, err)
	}
	policy := e.admission.Plans.PolicyOf(tenant)
	policy.Version = fair.PolicyVersion(tenant)
	byQueue := map[string][]int{}
	var order []string
	batch := make([]fair.Task, len(payloads))
	var follows []fair.Message // the follow-ups, allocated together
	for i, p := range payloads {
		data, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("encode %s payload: %w", p.TypeName(), err)
		}
		spec := e.spec(p)
		id := spec.TaskID
		if id == "" {
			id = uuid.NewString()
		}
		batch[i] = fair.Task{
			Message: fair.Message{ID: id, Type: p.TypeName(), Queue: spec.Queue, Payload: data,
				Retry: spec.MaxRetry, Timeout: spec.Timeout, Retention: spec.Retention},
			ReplaceFinished: spec.Conflict != KeepExisting,
		}
		if spec.Conflict == ReplaceFinishedFollowRunning {
			// The follow-up of a running task goes in the same script
			// call: all or nothing against the caps, with the rest.
			if follows == nil {
				follows = make([]fair.Message, len(payloads))
			}
			f := &follows[i]
			*f = batch[i].Message
			f.ID = FollowUpID(id)
			batch[i].FollowUp = f
		}
		if _, ok := byQueue[spec.Queue]; !ok {
			order = append(order, spec.Queue)
		}
		byQueue[spec.Queue] = append(byQueue[spec.Queue], i)
	}
	out := make([]EnqueueResult, len(payloads))
	infos := make([]asynq.TaskInfo, len(payloads)) // out's, allocated together
	// The old records of the ids a task may replace go before the enqueue:
	// a worker may archive the new task (writing its record) before a
	// forget sent after the enqueue lands.
	var replaced []string
	for _, t := range batch {
		if t.ReplaceFinished {
			replaced = append(replaced, t.Message.ID)
		}
	}
	// A refused enqueue (a cap: nothing of it accepted) puts them back.
	taken := e.takeRecords(ctx, tenantID, replaced) // task records hook (records.go)
	accepted := make(map[string]bool, len(replaced))
	var fresh []string // ids of waiting follow-ups: an old record of the id goes
	for _, q := range order {
		idx := byQueue[q]
		group := make([]fair.Task, len(idx))
		for j, i := range idx {
			group[j] = batch[i]
		}
		res, err := e.admission.Dispatcher.Enqueue(ctx, tenantID, policy, group)
		if err != nil {
			if errors.Is(err, fair.ErrBacklogFull) || errors.Is(err, fair.ErrQueueFull) {
				e.restoreRecords(ctx, tenantID, taken, accepted)
			}
			return nil, fmt.Errorf("enqueue %d tasks of tenant %s in %s: %w", len(group), tenantID, q, err)
		}
		for _, t := range group {
			accepted[t.Message.ID] = true
		}
		for j, i := range idx {
			m := group[j].Message
			if res[j].FollowUp {
				m = *group[j].FollowUp
			}
			infos[i] = asynq.TaskInfo{
				ID: m.ID, Queue: q, Type: m.Type, Payload: m.Payload, State: taskState(res[j].State),
				MaxRetry: m.Retry, Timeout: m.Timeout, Retention: m.Retention,
			}
			out[i] = EnqueueResult{Existing: res[j].Existing, Info: &infos[i]}
			// A follow-up waiting (added by this call, or found waiting:
			// the same call sent again by go-redis after a read timeout
			// answers the follow-up its first run added as existing) is
			// that id's task now: an older record of the id, archived,
			// would show once asynq lets the follow-up go.
			if res[j].FollowUp && (!res[j].Existing || res[j].State == "pending") {
				fresh = append(fresh, m.ID)
			}
		}
	}
	e.forgetRecords(ctx, tenantID, fresh) // task records hook (records.go)
	return out, nil
}

// taskState maps asynq's state names (as stored in Redis) to TaskState.
func taskState(s string) asynq.TaskState {
	switch s {
	case "active":
		return asynq.TaskStateActive
	case "scheduled":
		return asynq.TaskStateScheduled
	case "retry":
		return asynq.TaskStateRetry
	case "archived":
		return asynq.TaskStateArchived
	case "completed":
		return asynq.TaskStateCompleted
	case "aggregating":
		return asynq.TaskStateAggregating
	}
	return asynq.TaskStatePending
}

// announce wakes the workers waiting idle on info's queue for a system
// task, which bypasses admission: without it they would find the task at
// their next IDLE_RECHECK_INTERVAL, not at once. A failed announcement
// only costs that wait, so it is logged, not returned.
func (e *Enqueuer) announce(ctx context.Context, p Payload, info *asynq.TaskInfo) {
	if err := e.admission.Dispatcher.Announce(ctx, info.Queue); err != nil {
		e.logger.WarnContext(ctx, "could not announce a system task to idle workers; they find it at their next recheck",
			slog.String("task_id", info.ID), slog.String("task_type", p.TypeName()), slog.String("error", err.Error()))
	}
}

// enqueuePlain enqueues a validated payload straight into asynq.
func (e *Enqueuer) enqueuePlain(ctx context.Context, p Payload) (EnqueueResult, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return EnqueueResult{}, fmt.Errorf("encode %s payload: %w", p.TypeName(), err)
	}
	spec := e.spec(p)
	if spec.Conflict != KeepExisting && spec.TaskID != "" {
		// Before the enqueue, not after it: a worker may take the new
		// task and archive it (writing its record) before a forget sent
		// after the enqueue lands, which would delete the new record.
		e.forgetRecord(ctx, p, spec.TaskID) // task records hook (records.go)
	}
	for range enqueueAttempts {
		info, err := e.client.EnqueueContext(ctx, asynq.NewTask(p.TypeName(), data, spec.Options()...))
		if err == nil {
			return EnqueueResult{Info: info}, nil
		}
		if !errors.Is(err, asynq.ErrTaskIDConflict) || spec.TaskID == "" {
			return EnqueueResult{}, e.enqueueFailed(p, spec.TaskID, err)
		}
		existing, err := e.taskInfo(ctx, spec.Queue, spec.TaskID)
		if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
			continue // it went away between the conflict and the look-up
		}
		if err != nil {
			return EnqueueResult{}, fmt.Errorf("inspect existing task %s: %w", spec.TaskID, err)
		}
		if spec.Conflict == KeepExisting || !finished(existing.State) {
			return EnqueueResult{Info: existing, Existing: true}, nil
		}
		if err := e.deleteFinished(ctx, spec.Queue, spec.TaskID); err != nil {
			return EnqueueResult{}, fmt.Errorf("replace finished task %s: %w", spec.TaskID, err)
		}
		e.logger.DebugContext(ctx, "replacing finished task",
			slog.String("task_id", spec.TaskID), slog.String("task_type", p.TypeName()),
			slog.String("previous_state", existing.State.String()))
	}
	return EnqueueResult{}, fmt.Errorf("enqueue %s %s: task id still conflicting after %d attempts", p.TypeName(), spec.TaskID, enqueueAttempts)
}

// deleteFinishedScript deletes an asynq task only while it is completed or
// archived, as asynq's own delete does for those states. KEYS[1] the
// task's hash, KEYS[2] the queue's completed set, KEYS[3] its archived
// set; ARGV[1] the task id. It returns 1 when it deleted the task. Before
// it deletes, it writes the task's state back as it is, as oomGuard does
// (records.go): at maxmemory (policy noeviction) Redis refuses that write
// and the script with it, but not the deletions, and the enqueue it makes
// room for would be refused next, leaving the finished task (a completed
// render's status and result) gone for a request answered 503.
var deleteFinishedScript = redis.NewScript(`
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'completed' or state == 'archived' then
  redis.call('HSET', KEYS[1], 'state', state)
end
if state == 'completed' then
  redis.call('ZREM', KEYS[2], ARGV[1])
elseif state == 'archived' then
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  return 0
end
redis.call('DEL', KEYS[1])
return 1
`)

// deleteFinished deletes the finished task id of queue so that a new task
// can take its id. With WithRedis it deletes it only while it is still
// finished: another enqueue may have replaced it since it was inspected,
// and the task that enqueue made must stay (the caller's next enqueue
// then finds it and returns it). A task already gone is no error.
func (e *Enqueuer) deleteFinished(ctx context.Context, queue, id string) error {
	if e.rdb == nil {
		err := e.inspector.DeleteTask(queue, id)
		if err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			return err
		}
		return nil
	}
	prefix := "asynq:{" + queue + "}:"
	keys := []string{prefix + "t:" + id, prefix + "completed", prefix + "archived"}
	if err := deleteFinishedScript.Run(ctx, e.rdb, keys, id).Err(); err != nil {
		return fmt.Errorf("delete finished task: %w", err)
	}
	return nil
}

// enqueueFailed wraps err, the asynq client's failure to enqueue p. asynq
// reports a failed script call as text only ("redis eval error: ..."),
// dropping the error that says Redis could not be reached, so callers
// could not tell an outage (the HTTP API's 503 with Retry-After) from a
// bug (500). A ping tells: when it fails too, its error joins the chain.
// A Redis that refuses writes for now answers the ping all the same: at
// maxmemory ("OOM command not allowed ..."), as a replica (a master
// demoted by a failover that the client still reaches: "READONLY You
// can't write against a read only replica.") and as a master with
// min-replicas-to-write whose replicas are gone or lagging ("NOREPLICAS
// Not enough good replicas to write.") and a server with save points
// whose last background save failed ("MISCONF Redis is configured to save
// RDB snapshots, but it's currently unable to persist to disk."), and so
// does a Redis Cluster whose queue's hash slot no master serves
// ("CLUSTERDOWN Hash slot not served", "CLUSTERDOWN The cluster is down":
// a PING names no key, and any node answers it) or is being migrated
// ("TRYAGAIN"). Redis's refusals of every command for a moment (LOADING
// its data after a restart, BUSY running a script past
// busy-reply-threshold, MASTERDOWN: a replica whose link to its master is
// down, with replica-serve-stale-data no) refuse the ping too, unless
// they ended in between (the data loaded, the script done, the link
// back), or the server answers PING while it refuses with MASTERDOWN (as
// Redis before 7.0 does). Such a reply, found in the text, joins the
// chain as a Redis error (redis.IsOOMError, redis.HasErrorPrefix).
func (e *Enqueuer) enqueueFailed(p Payload, taskID string, err error) error {
	if perr := e.client.Ping(); perr != nil {
		return fmt.Errorf("enqueue %s %s: %w (redis ping: %w)", p.TypeName(), taskID, err, perr)
	}
	for _, reply := range writeRefusals {
		if i := strings.Index(err.Error(), reply); i >= 0 {
			return fmt.Errorf("enqueue %s %s: %w", p.TypeName(), taskID, errors.Join(err, redisReply(err.Error()[i:])))
		}
	}
	return fmt.Errorf("enqueue %s %s: %w", p.TypeName(), taskID, err)
}

// writeRefusals start Redis's refusals of a write that come with a ping
// answered: at maxmemory (policy noeviction), from a replica, and from a
// master short of the replicas min-replicas-to-write asks for, after a
// failed background save, and from a cluster whose queue's slot is
// served by no master or moving between two; and its refusals of every
// command for a moment, which may have ended by the time of the ping:
// while it loads its data, runs a long script, or, as a replica that
// serves no stale data, has lost its master.
var writeRefusals = []string{"OOM command not allowed", "READONLY You can't write", "NOREPLICAS Not enough good replicas", "MISCONF Redis is configured to save",
	"CLUSTERDOWN ", "TRYAGAIN ", "LOADING ", "BUSY ", "MASTERDOWN "}

// redisReply is an error reply of Redis that asynq's client reported as
// text only: a redis.Error again, for redis.HasErrorPrefix and
// redis.IsOOMError.
type redisReply string

func (r redisReply) Error() string { return string(r) }

// RedisError marks redisReply as a redis.Error.
func (redisReply) RedisError() {}

// asynqQueuesKey is asynq's registry of queues, which its inspector checks
// before it looks a task up.
const asynqQueuesKey = "asynq:queues"

// taskInfo is the inspector's GetTaskInfo, for a queue of the layout that
// asynq's registry may not list although its tasks are there: Redis lost
// its data (restarted without persistence, flushed, a key evicted), and
// asynq's client and the dispatcher register a queue once per process, so
// the inspector would report every task of it missing until the enqueue
// service restarts. With WithRedis, such a queue that holds the task is
// registered again and asked once more.
func (e *Enqueuer) taskInfo(ctx context.Context, queue, id string) (*asynq.TaskInfo, error) {
	info, err := e.inspector.GetTaskInfo(queue, id)
	if !errors.Is(err, asynq.ErrQueueNotFound) || e.rdb == nil {
		return info, err
	}
	// Only when the task is there: a look-up is a read, and a queue no
	// task was ever enqueued in is not registered for it (a Redis at
	// maxmemory refuses the write, and the look-up would fail).
	if n, xerr := e.rdb.Exists(ctx, "asynq:{"+queue+"}:t:"+id).Result(); xerr != nil {
		return nil, fmt.Errorf("look up task %.64q in queue %s: %w", id, queue, xerr)
	} else if n == 0 {
		return info, err
	}
	if err := e.rdb.SAdd(ctx, asynqQueuesKey, queue).Err(); err != nil {
		return nil, fmt.Errorf("register queue %s again: %w", queue, err)
	}
	return e.inspector.GetTaskInfo(queue, id)
}

// finished reports whether a task in state s is done for good.
func finished(s asynq.TaskState) bool {
	return s == asynq.TaskStateCompleted || s == asynq.TaskStateArchived
}

// TenantTask returns the task with id taskID if it belongs to tenantID. A
// task waiting in its tenant's backlog is reported as pending; otherwise it
// looks in the tenant's asynq queues (Layout.TenantQueues: its shard of
// each class, and its shards under the other served counts). It returns
// ErrTaskNotFound when the task does not exist or its payload names
// another tenant (or none): a tenant never learns whether another tenant's
// task id exists, not even from the time the answer takes (such a task is
// looked past, and the look-up goes on as for an id no task has). A task asynq no longer has but the tenant's TaskRecords
// keep (WithTaskRecords) is returned as archived, from its record.
//
// It returns when ctx ends, with an error matching ctx's, also while Redis
// does not answer: asynq's Inspector takes no context, and the Redis
// client bounds a command by its own read timeout (3 s a try), not by
// ctx. So the look-up runs in a goroutine of its own, which the caller
// stops waiting for; it ends when Redis answers or the client gives up.
// At most maxLookups look-ups run at once, those whose callers gave up
// included: a caller that finds them all running waits for one to end, or
// for ctx, and starts nothing.
func (e *Enqueuer) TenantTask(ctx context.Context, tenantID, taskID string) (*asynq.TaskInfo, error) {
	if tenantID == "" || taskID == "" || len(taskID) > maxTaskIDLen {
		return nil, ErrTaskNotFound
	}
	select {
	case e.lookups <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("look up task %.64q: waiting for a look-up to end: %w", taskID, ctx.Err())
	}
	type answer struct {
		info *asynq.TaskInfo
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		defer func() { <-e.lookups }()
		defer func() {
			if p := recover(); p != nil {
				done <- answer{err: fmt.Errorf("look up task %.64q: panic: %v", taskID, p)}
			}
		}()
		info, err := e.tenantTask(ctx, tenantID, taskID)
		done <- answer{info, err}
	}()
	select {
	case a := <-done:
		return a.info, a.err
	case <-ctx.Done():
		return nil, fmt.Errorf("look up task %.64q: %w", taskID, ctx.Err())
	}
}

// lookPasses bounds the passes of a look-up over a tenant's backlogs,
// parked tasks and asynq queues (tenantTask) that found the task nowhere.
const lookPasses = 3

// tenantTask is TenantTask's look-up, run in a goroutine of its own.
//
// With admission it looks at the backlog first: a task admitted meanwhile
// is then found in asynq, never missed between the two. A task can also go
// the other way while it looks, out of asynq after the look at the backlog
// and at the parked tasks and before the look at asynq: a hold moves an
// admitted task back into its backlog, a worker parks a task of a held
// tenant (the dispatcher keeps it, asynq lets it go), a release puts a
// parked task back into its backlog. A pass that finds the task nowhere
// looks again, up to lookPasses passes, before the task counts as gone.
func (e *Enqueuer) tenantTask(ctx context.Context, tenantID, taskID string) (*asynq.TaskInfo, error) {
	queues := e.layout.TenantQueues(tenantID)
	passes := 1
	if e.admission != nil {
		passes = lookPasses
	}
	for range passes {
		info, found, err := e.lookTask(ctx, tenantID, taskID, queues)
		if err != nil {
			return nil, err
		}
		if found {
			return info, nil
		}
	}
	return e.archivedRecord(ctx, tenantID, taskID) // task records hook (records.go)
}

// lookTask is one pass of tenantTask over queues: the task and true when
// it found it, and false when it found it nowhere. A task of another tenant
// (or of none) counts as found nowhere, and the pass goes on looking where
// it would for an id no task has: a look-up that stopped at it sent Redis
// fewer commands, and its answer's time told the asking tenant that the id
// exists (which of another tenant's invoices have a render or a reminder).
func (e *Enqueuer) lookTask(ctx context.Context, tenantID, taskID string, queues []string) (*asynq.TaskInfo, bool, error) {
	if e.admission != nil {
		w, ok, err := e.admission.Dispatcher.Waiting(ctx, taskID, queues...)
		if err != nil {
			return nil, false, fmt.Errorf("look up task %.64q: %w", taskID, err)
		}
		if ok && w.TenantID == tenantID {
			m := w.Message
			return &asynq.TaskInfo{ID: w.ID, Queue: w.Queue, Type: w.Type, Payload: m.Payload, State: asynq.TaskStatePending,
				MaxRetry: m.Retry, Retried: m.Retried, LastErr: m.LastErr, Timeout: m.Timeout, Retention: m.Retention}, true, nil
		}
		// Parked while its tenant is held (or at its running cap): the
		// dispatcher keeps it, asynq has let it go. It waits: pending.
		if w, ok, err := e.admission.Dispatcher.Parked(ctx, tenantID, taskID, queues...); err != nil {
			return nil, false, fmt.Errorf("look up task %.64q: %w", taskID, err)
		} else if ok {
			m := w.Message
			return &asynq.TaskInfo{ID: w.ID, Queue: w.Queue, Type: w.Type, Payload: m.Payload, State: asynq.TaskStatePending,
				MaxRetry: m.Retry, Retried: m.Retried, LastErr: m.LastErr, Timeout: m.Timeout, Retention: m.Retention}, true, nil
		}
	}
	for _, q := range queues {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		info, err := e.taskInfo(ctx, q, taskID)
		if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("look up task %.64q in queue %s: %w", taskID, q, err)
		}
		if owner, err := OwnerOf(info.Payload); err != nil || owner != tenantID {
			continue // another tenant's: as if it were not there
		}
		return info, true, nil
	}
	return nil, false, nil
}
