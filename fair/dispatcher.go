package fair

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/invoicing/tenantworker/tenantctx"
)

// Defaults of Config.
const (
	DefaultPendingPerSlot    = 1.0
	DefaultMaxPendingPerSlot = 50
	DefaultPendingTime       = 20 * time.Millisecond
	DefaultMinPending        = 4
	DefaultMaxAdmit          = 64
	DefaultHealEvery         = time.Second
	DefaultLease             = 30 * time.Second
	DefaultCost              = 5 * time.Millisecond
	DefaultMaxWaitingTotal   = 1_000_000
)

// Config tunes a Dispatcher. The zero value uses the defaults above.
type Config struct {
	// PendingTime is how much work the dispatcher keeps waiting in an
	// asynq queue per worker slot of the live workers (their summed
	// concurrency, from heartbeats), at the queue's measured cost per
	// task: about what a task of a tenant with work in flight waits
	// behind (a quiet tenant's first task goes ahead of it). More
	// keeps workers busier across the gap between a completion and the
	// refill it triggers. 0 means DefaultPendingTime.
	PendingTime time.Duration
	// PendingPerSlot and MaxPendingPerSlot bound that depth in tasks per
	// slot; 0 means DefaultPendingPerSlot and DefaultMaxPendingPerSlot.
	PendingPerSlot    float64
	MaxPendingPerSlot float64
	// MinPending is the least depth, also while no worker is alive. 0
	// means DefaultMinPending.
	MinPending int
	// HealEvery is how often, per queue, a worker's heartbeat repairs
	// what a partial loss of Redis's data left of the dispatcher's state
	// (one beat of all the workers' per period: its cost does not grow
	// with their number; see healPrelude). 0 means DefaultHealEvery; a
	// negative value repairs at every beat.
	HealEvery time.Duration
	// MaxAdmit bounds the tasks one script call moves into asynq. 0 means
	// DefaultMaxAdmit.
	MaxAdmit int
	// Lease is asynq's lease of a running task as the dispatcher assumes
	// it: how long an admitted task counts against its tenant before the
	// dispatcher checks asynq's state of it again (a worker killed before
	// it reported the task), and, with half as much again, how long after
	// a park the worker's hand-back of the task may still reach Redis
	// (ParkRun): a parked task is not released before. It must not be
	// shorter than asynq's (30 s). 0 means DefaultLease.
	Lease time.Duration
	// DefaultCost is the estimated cost of a task type before one was
	// measured. 0 means DefaultCost.
	DefaultCost time.Duration
	// MaxWaitingTotal caps the tasks waiting in all tenants' backlogs of
	// one queue, whatever each tenant's own cap: past it an enqueue fails
	// with a *FullError (QueueWide, ErrQueueFull) and nothing of it is
	// accepted. It bounds the
	// Redis memory the backlogs take (about 550 bytes per small task), so
	// that many tenants filling their backlogs at once cannot run Redis
	// out of memory: at maxmemory Redis refuses the writes of asynq's own
	// scripts (its dequeue's RPOPLPUSH), and every worker stops. 0 means
	// DefaultMaxWaitingTotal; a negative value means no cap.
	MaxWaitingTotal int
	// Now is the clock of the dispatcher's times (leases, worker
	// heartbeats, drain marks, parks, enqueue times); nil means Redis's
	// (TIME, read by each script), so that processes whose clocks
	// disagree agree on them. Tests set it to move time.
	Now func() time.Time
	// OnAdmit, when set, is called with the queue and how long each task
	// admitted by a call had waited in its backlog (metrics).
	OnAdmit func(queue string, waited []time.Duration)
	// TaskIDs, when set, names a tenant's tasks by id: it returns the
	// stems S of the tenant's task ids (an id is S or starts with S and
	// ":"; tasks.TenantIDStems). Drain then also discards the tenant's
	// tasks in asynq's retry and scheduled sets, which it finds by id;
	// nil leaves them to run when due.
	TaskIDs func(tenantID string) []string
	// Holds, when set, returns the holds recorded outside Redis (the
	// catalog: suspended tenants, operators' pauses), so that they
	// survive a Redis that lost its data (restarted without persistence,
	// flushed). The holds of each queue are then written with a marker
	// (P..'holds'); while a queue's marker is gone its scripts admit
	// nothing, and the first worker heartbeat (Heartbeat, Serve) or
	// enqueue that finds it gone calls Holds and puts the holds back in
	// one script per queue, with the marker, which admits what may run.
	// It is called only then (concurrent enqueues of one Dispatcher
	// share a call), never while the marker is there. Every process
	// sharing the Redis must set it, or none: a process without it admits
	// while the marker is gone.
	Holds func(ctx context.Context) ([]Holding, error)
}

// Holding is a hold recorded outside Redis (Config.Holds): the tenant is
// held for Reason in each of Queues.
type Holding struct {
	TenantID string
	Reason   Reason
	Queues   []string
}

func (c Config) withDefaults() Config {
	if c.PendingPerSlot <= 0 {
		c.PendingPerSlot = DefaultPendingPerSlot
	}
	if c.MaxPendingPerSlot <= 0 {
		c.MaxPendingPerSlot = DefaultMaxPendingPerSlot
	}
	c.MaxPendingPerSlot = max(c.MaxPendingPerSlot, c.PendingPerSlot)
	c.PendingTime = cmp.Or(c.PendingTime, DefaultPendingTime)
	c.MinPending = cmp.Or(c.MinPending, DefaultMinPending)
	c.MaxAdmit = cmp.Or(c.MaxAdmit, DefaultMaxAdmit)
	c.Lease = cmp.Or(c.Lease, DefaultLease)
	c.DefaultCost = cmp.Or(c.DefaultCost, DefaultCost)
	c.MaxWaitingTotal = cmp.Or(c.MaxWaitingTotal, DefaultMaxWaitingTotal)
	c.HealEvery = cmp.Or(c.HealEvery, DefaultHealEvery)
	return c
}

// Policy is what a tenant is entitled to in each queue.
type Policy struct {
	// Weight is the tenant's share relative to other tenants with waiting
	// work (>= 1): a tenant of weight 4 gets four times the worker time of
	// one of weight 1 while both have a backlog.
	Weight int `json:"weight"`
	// MaxRunning caps the tenant's admitted, unfinished tasks in the queue
	// (pending in asynq or running); 0 means no cap.
	MaxRunning int `json:"max_running"`
	// MaxWaiting caps the tenant's backlog in the queue: an enqueue whose
	// new tasks, all counted as waiting, would take the backlog past it
	// fails with ErrBacklogFull and nothing of it is accepted (repeats of
	// existing tasks do not count). 0 means no cap.
	MaxWaiting int `json:"max_waiting"`
	// Version orders the policies of one tenant (PolicyVersion: its
	// catalog row's updated stamp): a queue keeps a policy recorded there
	// with a later version rather than take this one, so an enqueue that
	// read the tenant before a limits change, applied by SetPolicy while
	// the enqueue was on its way, does not put the old policy back, nor
	// take the tenant's backlog past the new max waiting. 0 is older than
	// every version. Stats does not report it.
	Version int64 `json:"-"`
}

// Task is one task to enqueue through the dispatcher.
type Task struct {
	// Message is the asynq message; its ID (required) dedupes, its Queue
	// picks the queue.
	Message Message
	// ReplaceFinished replaces a completed or archived task with the same
	// id by this one; otherwise such a task is returned as existing.
	ReplaceFinished bool
	// FollowUp, when set, is enqueued instead of the task when a task with
	// its id is running: the follow-up (its own id, in the same queue) is
	// added like a replacing task, in the same call and under the same
	// caps, and the Result is the follow-up's.
	FollowUp *Message
}

// Result is what became of one enqueued task.
type Result struct {
	// ID is the task id.
	ID string
	// State is "pending" for a new task and for one waiting in a backlog
	// (whether or not it was admitted to asynq yet), else asynq's state of
	// the existing task ("active", "retry", "completed", ...).
	State string
	// Existing is true when a task with this id existed (dedupe): nothing
	// was enqueued.
	Existing bool
	// FollowUp is true when the task's own id was running and the result
	// (ID, State, Existing) is its Task.FollowUp's.
	FollowUp bool
}

// ErrBacklogFull is matched (errors.Is) by a *FullError of a tenant's
// backlog, ErrQueueFull by one of a queue's backlogs together.
var (
	ErrBacklogFull = errors.New("tenant backlog full")
	ErrQueueFull   = errors.New("queue backlog full")
)

// FullError says an enqueue would take a backlog past its cap; nothing of
// it was accepted. The cap is the tenant's MaxWaiting, or with QueueWide
// the queue's Config.MaxWaitingTotal over all tenants: the system's limit,
// not the tenant's.
type FullError struct {
	Queue string
	// Waiting is the tasks waiting in the tenant's backlog, or with
	// QueueWide in all the queue's backlogs.
	Waiting   int
	QueueWide bool
	// RetryAfter estimates when room frees up.
	RetryAfter time.Duration
	// Adding is how many new tasks the refused enqueue would have added
	// (ids named twice or already there not counted), and Cap the cap it
	// would have taken past: the tenant's MaxWaiting, or with QueueWide
	// Config.MaxWaitingTotal.
	Adding, Cap int
}

// Never reports whether the refused enqueue adds more tasks than its cap
// allows at all: it cannot be accepted whole however long its caller
// waits (a bulk request larger than the tenant's max_waiting), so it must
// be split, not retried.
func (e *FullError) Never() bool { return e.Cap > 0 && e.Adding > e.Cap }

func (e *FullError) Error() string {
	if e.QueueWide {
		return fmt.Sprintf("queue backlog full: %d tasks waiting in queue %s", e.Waiting, e.Queue)
	}
	return fmt.Sprintf("tenant backlog full: %d tasks waiting in queue %s", e.Waiting, e.Queue)
}

// Is makes errors.Is(err, ErrQueueFull) true with QueueWide, else
// errors.Is(err, ErrBacklogFull).
func (e *FullError) Is(target error) bool {
	if e.QueueWide {
		return target == ErrQueueFull
	}
	return target == ErrBacklogFull
}

// Dispatcher admits tenants' tasks into asynq queues fairly. Any number of
// processes may use dispatchers on the same Redis at once: every step is
// one Lua script on the keys of one queue. It is safe for concurrent use.
type Dispatcher struct {
	rdb redis.UniversalClient
	cfg Config
	// published holds the queues already added to asynq's set of queues.
	published sync.Map
	// holdsFlight shares one call of Config.Holds among concurrent callers.
	holdsFlight singleflight.Group
}

// allQueuesKey is asynq's set of queue names (base.AllQueues), which its
// inspector and dashboard list.
const allQueuesKey = "asynq:queues"

// publish adds q to asynq's set of queues once per process, as
// asynq.Client does before its first enqueue to a queue.
func (d *Dispatcher) publish(ctx context.Context, q string) error {
	if _, ok := d.published.Load(q); ok {
		return nil
	}
	if err := d.rdb.SAdd(ctx, allQueuesKey, q).Err(); err != nil {
		return fmt.Errorf("fair: register queue %s: %w", q, err)
	}
	d.published.Store(q, true)
	return nil
}

// Announce tells the workers waiting idle on queue (IdleWaiter) that
// work is there, as an admission into an empty pending list does: for a
// task put into asynq's lists without admission (a system task), which
// they would otherwise find only at their next recheck. A refused publish
// (an ACL without PUBLISH) loses nothing but that: the caller may ignore
// the error.
func (d *Dispatcher) Announce(ctx context.Context, queue string) error {
	if err := checkQueue(queue); err != nil {
		return err
	}
	if err := d.rdb.Publish(ctx, WakeChannel(queue), "").Err(); err != nil {
		return fmt.Errorf("fair: announce work in %s: %w", queue, err)
	}
	return nil
}

// New returns a Dispatcher over rdb, the Redis client asynq uses.
func New(rdb redis.UniversalClient, cfg Config) *Dispatcher {
	return &Dispatcher{rdb: rdb, cfg: cfg.withDefaults()}
}

// keys returns the two prefixes a script of queue q runs on.
func keys(q string) []string {
	return []string{"fair:{" + q + "}:", "asynq:{" + q + "}:"}
}

// scriptKeys returns the KEYS of a script of queue q: its two prefixes,
// and with Config.Holds the marker of the queue's holds (restoreScript).
func (d *Dispatcher) scriptKeys(q string) []string {
	k := keys(q)
	if d.cfg.Holds != nil {
		k = append(k, k[0]+"holds")
	}
	return k
}

// nowMS is the scripts' now in Unix milliseconds (Config.Now), or "" for
// Redis's TIME.
func (d *Dispatcher) nowMS() string {
	if d.cfg.Now == nil {
		return ""
	}
	return strconv.FormatInt(d.cfg.Now().UnixMilli(), 10)
}

// common returns the ARGV every script starts with (see scripts.go).
func (d *Dispatcher) common(extra int) []any {
	ms, ns := "", "" // Redis's TIME
	if d.cfg.Now != nil {
		now := d.cfg.Now()
		ms, ns = strconv.FormatInt(now.UnixMilli(), 10), strconv.FormatInt(now.UnixNano(), 10)
	}
	args := make([]any, 0, 9+extra)
	return append(args,
		ms,
		ns,
		d.cfg.MinPending,
		strconv.FormatFloat(d.cfg.PendingPerSlot, 'f', -1, 64),
		d.cfg.Lease.Milliseconds(),
		d.cfg.DefaultCost.Microseconds(),
		d.cfg.MaxAdmit,
		d.cfg.PendingTime.Microseconds(),
		strconv.FormatFloat(d.cfg.MaxPendingPerSlot, 'f', -1, 64),
	)
}

// checkTenant validates a tenant id before it becomes part of a key.
func checkTenant(id string) error {
	if err := tenantctx.ValidateID(id); err != nil {
		return fmt.Errorf("fair: tenant id: %w", err)
	}
	return nil
}

// checkType refuses task types that would break the tab-separated records
// a type is stored in.
func checkType(typ string) error {
	if typ == "" || strings.Contains(typ, "\t") {
		return fmt.Errorf("fair: invalid task type %.70q", typ)
	}
	return nil
}

// checkQueue refuses queue names that would break the key layout.
func checkQueue(q string) error {
	if q == "" || len(q) > 64 || strings.ContainsAny(q, "{}\t\r\n ") {
		return fmt.Errorf("fair: invalid queue name %.70q", q)
	}
	return nil
}

// Enqueue adds tasks of one tenant, all in one queue, to the tenant's
// backlog in one script call, with dedupe by task id against both the
// backlog and asynq, and admits whatever the queue has room for (the
// tenant's own tasks only if it is its turn). Results are in the order of
// tasks. A task with a FollowUp whose own id is running gets its follow-up
// enqueued instead (Result.FollowUp). Past p.MaxWaiting (the max waiting
// of the policy the queue records instead, when that one's Version is
// later than p's), or past the queue's Config.MaxWaitingTotal, counting
// the follow-ups, it returns a *FullError and accepts nothing.
func (d *Dispatcher) Enqueue(ctx context.Context, tenantID string, p Policy, tasks []Task) ([]Result, error) {
	if len(tasks) == 0 {
		return nil, nil
	}
	if err := checkTenant(tenantID); err != nil {
		return nil, err
	}
	q := tasks[0].Message.Queue
	if err := checkQueue(q); err != nil {
		return nil, err
	}
	if err := d.publish(ctx, q); err != nil {
		return nil, err
	}
	args := d.common(7 + 6*len(tasks))
	args = append(args, tenantID, max(p.Weight, 1), max(p.MaxRunning, 0), max(p.MaxWaiting, 0), len(tasks), max(d.cfg.MaxWaitingTotal, 0), max(p.Version, 0))
	var scratch []byte // the follow-ups' encodings, one at a time (followUpArg)
	for _, t := range tasks {
		m := t.Message
		switch {
		case m.Queue != q:
			return nil, fmt.Errorf("fair: one enqueue spans queues %s and %s", q, m.Queue)
		case m.ID == "" || m.Type == "":
			return nil, errors.New("fair: task without id or type")
		case checkType(m.Type) != nil:
			return nil, checkType(m.Type)
		}
		replace := "0"
		if t.ReplaceFinished {
			replace = "1"
		}
		msg, idAt := m.encode()
		var followID string
		var followMsg any = ""
		if f := t.FollowUp; f != nil {
			if f.Queue != q || f.Type != m.Type || f.ID == "" || f.ID == m.ID {
				return nil, fmt.Errorf("fair: follow-up %.70q of task %.70q: want its own id, the same type and queue", f.ID, m.ID)
			}
			followID = f.ID
			followMsg, scratch = followUpArg(scratch, msg, idAt, m.ID, *f)
		}
		args = append(args, m.ID, m.Type, replace, msg, followID, followMsg)
	}
	raw, err := enqueueScript.Run(ctx, d.rdb, d.scriptKeys(q), args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("fair: enqueue %d tasks of tenant %s in %s: %w", len(tasks), tenantID, q, err)
	}
	if len(raw) == 5 && raw[0] == "queue_full" {
		waiting, _ := raw[1].(int64)
		cost, _ := strconv.ParseFloat(fmt.Sprint(raw[2]), 64)
		slots, _ := raw[3].(int64)
		adding, _ := raw[4].(int64)
		return nil, &FullError{Queue: q, Waiting: int(waiting), QueueWide: true, Adding: int(adding), Cap: d.cfg.MaxWaitingTotal,
			RetryAfter: retryAfter(int(waiting)+int(adding)-d.cfg.MaxWaitingTotal, cost, int(slots))}
	}
	if len(raw) == 6 && raw[0] == "full" {
		// The caps are those in force in the queue: a policy recorded
		// there of a later version than p keeps its own.
		waiting, _ := raw[1].(int64)
		est, _ := strconv.ParseFloat(fmt.Sprint(raw[2]), 64)
		adding, _ := raw[3].(int64)
		capped, _ := raw[4].(int64)
		running, _ := raw[5].(int64)
		return nil, &FullError{Queue: q, Waiting: int(waiting), Adding: int(adding), Cap: int(capped),
			RetryAfter: retryAfter(int(waiting)+int(adding)-int(capped), est, int(running))}
	}
	if len(raw) != 3 && len(raw) != 4 {
		return nil, fmt.Errorf("fair: enqueue: unexpected reply %v", raw)
	}
	states, _ := raw[1].([]any)
	if len(states) != len(tasks) {
		return nil, fmt.Errorf("fair: enqueue: %d results for %d tasks", len(states), len(tasks))
	}
	out := make([]Result, len(tasks))
	for i, s := range states {
		st, _ := s.(string)
		r := Result{ID: tasks[i].Message.ID, State: "pending"}
		if f, ok := strings.CutPrefix(st, "follow:"); ok && tasks[i].FollowUp != nil {
			st, r.ID, r.FollowUp = f, tasks[i].FollowUp.ID, true
		}
		switch {
		case st == "waiting":
			r.Existing = true
		case strings.HasPrefix(st, "exists:"):
			r.Existing, r.State = true, strings.TrimPrefix(st, "exists:")
		}
		out[i] = r
	}
	d.observe(q, raw[2])
	if len(raw) == 4 {
		// The queue's holds are lost (Redis lost its data): the tasks
		// wait in the backlog, and putting the holds back admits them.
		// Should that fail, a worker's heartbeat does it: the enqueue
		// stands either way.
		if list, err := d.readHolds(ctx); err == nil {
			_, _, _ = d.restoreHolds(ctx, q, list)
		}
	}
	return out, nil
}

// readHolds calls Config.Holds, once for the callers that ask at the same
// time (the enqueues that find a queue's holds lost).
func (d *Dispatcher) readHolds(ctx context.Context) ([]Holding, error) {
	v, err, _ := d.holdsFlight.Do("", func() (any, error) {
		return d.cfg.Holds(ctx)
	})
	if err != nil {
		return nil, fmt.Errorf("fair: read the holds Redis lost: %w", err)
	}
	return v.([]Holding), nil
}

// retryAfter estimates how long until excess waiting tasks have been
// admitted: their estimated cost spread over a parallelism (a tenant's
// running cap, or the queue's live worker slots), between 1 s and a minute.
func retryAfter(excess int, estimateUS float64, maxRunning int) time.Duration {
	par := max(maxRunning, 1)
	d := time.Duration(float64(max(excess, 1)) * estimateUS / float64(par) * float64(time.Microsecond))
	return min(max(d, time.Second), time.Minute).Round(time.Second)
}

// observe hands the wait times in an admit() reply to cfg.OnAdmit.
func (d *Dispatcher) observe(q string, reply any) int {
	list, _ := reply.([]any)
	n := len(list) / 2
	if d.cfg.OnAdmit == nil || n == 0 {
		return n
	}
	waits := make([]time.Duration, 0, n)
	for i := 1; i < len(list); i += 2 {
		if ms, ok := list[i].(int64); ok && ms >= 0 {
			waits = append(waits, time.Duration(ms)*time.Millisecond)
		}
	}
	if len(waits) > 0 {
		d.cfg.OnAdmit(q, waits)
	}
	return n
}

// RunHeader is the asynq task header in which admission names the run it
// starts (asynq.Task.Headers): a token the task's Report carries as Run.
const RunHeader = "fair-run"

// Report is one finished attempt of an admitted task, as a worker saw it.
type Report struct {
	Queue    string
	TaskID   string
	TenantID string
	Type     string
	// Cost is the worker time the attempt took.
	Cost time.Duration
	// Run is the run token the attempt ran under: the task's RunHeader,
	// or the token GateRun gave a retry. A report with one frees the
	// task's running slot only when the task id's admission is that run:
	// a report of an earlier run of the id, delivered after the id was
	// admitted again (its lease ran out, a retry, a replacement), is
	// charged but leaves the new run's slot taken. Empty (a task admitted
	// by an earlier release, a caller that does not know it) ends whatever
	// run of the id is admitted.
	Run string
	// CutOff says asynq gave up on the attempt under its handler (a
	// shutdown that stopped waiting for it put the task back into asynq's
	// pending list, or its lease was lost and asynq retries it): its Cost
	// is charged to the tenant in full, and nothing else happens. Its run
	// goes on (another worker may be running it already), so the report
	// frees no slot, and the cost estimates do not learn from a time that
	// is not a whole task's. A cut-off attempt that asynq failed itself (a
	// cancel from its dashboard: the task is in the retry set or the
	// archive when the report comes) ended its run: the report frees the
	// slot. One that comes before asynq's own write brings the run's lease
	// check forward to a second later.
	CutOff bool
}

// Complete records finished attempts of tasks of one queue: their slots
// are freed, their tenants are charged what the attempts actually cost
// (correcting the estimate charged at admission), the cost estimates learn
// from them, and the queue is refilled. Reports of tasks the dispatcher
// did not admit (asynq retries) are charged in full. A report of a run the
// lease check ended before it came (Report.Run) corrects that run's
// estimate like any other: the tenant pays the run once, its measured
// cost.
//
// A report that names its run (Report.Run) ends that run only. Otherwise
// each call is applied as it comes: a caller that calls again after an
// error (the first call may have been applied, its reply lost) may end a
// later run of the same task id. A Reporter does not: it sends each batch
// under a sequence number the dispatcher applies at most once.
func (d *Dispatcher) Complete(ctx context.Context, queue string, reports []Report) error {
	return d.complete(ctx, queue, "", 0, reports)
}

// reporterTTL is how long the dispatcher keeps the highest batch sequence
// number of a Reporter it applied in a queue (see completeScript): a
// Reporter sends a failed batch again only within reporterResendFor, well
// inside it.
const reporterTTL = time.Hour

// complete is Complete for the batch seq of reporter ("": no reporter,
// applied as it comes).
func (d *Dispatcher) complete(ctx context.Context, queue, reporter string, seq uint64, reports []Report) error {
	if len(reports) == 0 {
		return nil
	}
	if err := checkQueue(queue); err != nil {
		return err
	}
	args := d.common(4 + 6*len(reports))
	args = append(args, len(reports), reporter, seq, reporterTTL.Milliseconds())
	for _, r := range reports {
		if err := checkTenant(r.TenantID); err != nil {
			return err
		}
		cut := "0"
		if r.CutOff {
			cut = "1"
		}
		args = append(args, r.TaskID, r.TenantID, r.Type, max(r.Cost.Microseconds(), 1), r.Run, cut)
	}
	reply, err := completeScript.Run(ctx, d.rdb, d.scriptKeys(queue), args...).Result()
	if err != nil {
		return fmt.Errorf("fair: complete %d tasks in %s: %w", len(reports), queue, err)
	}
	d.observe(queue, reply)
	return nil
}

// SetPolicy applies p to the tenant in each of queues where the
// dispatcher keeps state of it (Enqueue stores the policy it is given, so
// without this a changed policy would reach a queue only with the
// tenant's next enqueue there): a raised running cap or weight takes
// effect on the tenant's backlog at once, a lowered cap stops admissions
// past it. Queues where the tenant has no state get none (its next
// enqueue there brings the policy; one that read the tenant before this
// call, within policyAside, brings this one), and those that record a
// policy of a later Policy.Version keep theirs.
func (d *Dispatcher) SetPolicy(ctx context.Context, tenantID string, p Policy, queues ...string) error {
	return d.setPolicy(ctx, tenantID, p, false, queues)
}

// policyAside is how long SetPolicy keeps the policy it tells for a queue
// where the tenant has no state, for an enqueue already on its way with
// the tenant as it was before (it read the tenant's cache entry, then
// creates the tenant's state there): that enqueue brings the later
// policy, not the one it read. Longer than such an enqueue takes from
// its read to its script, short enough to leave nothing of an erased
// tenant behind for long.
const policyAside = time.Minute

// ResetPolicy is SetPolicy that also replaces a policy recorded with a
// later Policy.Version than p's: for a catalog restored from a backup,
// whose versions went back in time, so that the queues would otherwise
// keep the policies recorded before the restore until the tenant's row
// changes again (a policy SetPolicy set aside for a queue without the
// tenant's state goes too). An enqueue or SetPolicy of a version older
// than p's does not undo it; one that read the tenant before the restore
// (a version later than p's) would, so the tenant caches go first
// (docs/operations.md).
func (d *Dispatcher) ResetPolicy(ctx context.Context, tenantID string, p Policy, queues ...string) error {
	return d.setPolicy(ctx, tenantID, p, true, queues)
}

// setPolicy is SetPolicy, and with reset ResetPolicy.
func (d *Dispatcher) setPolicy(ctx context.Context, tenantID string, p Policy, reset bool, queues []string) error {
	if err := checkTenant(tenantID); err != nil {
		return err
	}
	force := "0"
	if reset {
		force = "1"
	}
	for _, q := range queues {
		if err := checkQueue(q); err != nil {
			return err
		}
		args := append(d.common(7), tenantID, max(p.Weight, 1), max(p.MaxRunning, 0), max(p.MaxWaiting, 0), max(p.Version, 0), force,
			policyAside.Milliseconds())
		reply, err := policyScript.Run(ctx, d.rdb, d.scriptKeys(q), args...).Result()
		if err != nil {
			return fmt.Errorf("fair: set policy of tenant %s in %s: %w", tenantID, q, err)
		}
		d.observe(q, reply)
	}
	return nil
}

// Pump admits whatever queue has room for and returns how many tasks it
// admitted.
func (d *Dispatcher) Pump(ctx context.Context, queue string) (int, error) {
	if err := checkQueue(queue); err != nil {
		return 0, err
	}
	reply, err := pumpScript.Run(ctx, d.rdb, d.scriptKeys(queue), d.common(0)...).Result()
	if err != nil {
		return 0, fmt.Errorf("fair: pump %s: %w", queue, err)
	}
	return d.observe(queue, reply), nil
}

// Heartbeat registers a worker's concurrency in queue for ttl (0
// concurrency removes it) and admits what the new total makes room for.
// It also repairs a few records of what a partial loss of Redis's data
// left inconsistent, and nothing else (see healPrelude in scripts.go), and
// with Config.Holds puts back the queue's holds when Redis lost them.
func (d *Dispatcher) Heartbeat(ctx context.Context, queue, workerID string, concurrency int, ttl time.Duration) error {
	_, err := d.heartbeat(ctx, queue, workerID, concurrency, ttl, &holdings{})
	return err
}

// Healed counts what a heartbeat repaired of the dispatcher's state after
// Redis lost part of its data.
type Healed struct {
	// Requeued is waiting tasks put back into their tenant's backlog list
	// (it was gone, or lost them).
	Requeued int
	// Admitted is admitted tasks whose lease entry or admission record
	// was gone.
	Admitted int
	// Readied is tenants with waiting tasks that may be admitted put back
	// into the admission order (their place in it was gone).
	Readied int
	// Held is tenants whose holds were put back from Config.Holds (the
	// queue's holds were lost), and HeldBack their admitted tasks that
	// asynq had not started, moved back into their backlogs.
	Held, HeldBack int
}

// holdings is what Config.Holds returned, read at most once for the
// queues of one round of heartbeats (Serve).
type holdings struct {
	read bool
	list []Holding
}

// get calls read (Dispatcher.readHolds) the first time.
func (h *holdings) get(ctx context.Context, read func(context.Context) ([]Holding, error)) ([]Holding, error) {
	if h.read {
		return h.list, nil
	}
	list, err := read(ctx)
	if err != nil {
		return nil, err
	}
	h.read, h.list = true, list
	return list, nil
}

// heartbeat is Heartbeat, returning what it repaired; the holds it puts
// back come from hs, read once for the caller's round of queues.
func (d *Dispatcher) heartbeat(ctx context.Context, queue, workerID string, concurrency int, ttl time.Duration, hs *holdings) (Healed, error) {
	if err := checkQueue(queue); err != nil {
		return Healed{}, err
	}
	args := append(d.common(4), workerID, max(concurrency, 0), ttl.Milliseconds(), max(d.cfg.HealEvery.Milliseconds(), 0))
	reply, err := heartbeatScript.Run(ctx, d.rdb, d.scriptKeys(queue), args...).Slice()
	if err != nil {
		return Healed{}, fmt.Errorf("fair: heartbeat %s: %w", queue, err)
	}
	if len(reply) != 5 {
		return Healed{}, fmt.Errorf("fair: heartbeat %s: unexpected reply %v", queue, reply)
	}
	d.observe(queue, reply[0])
	healed := Healed{Requeued: asInt(reply[1]), Admitted: asInt(reply[2]), Readied: asInt(reply[3])}
	if asInt(reply[4]) == 0 || d.cfg.Holds == nil {
		return healed, nil
	}
	list, err := hs.get(ctx, d.readHolds)
	if err != nil {
		return healed, fmt.Errorf("fair: heartbeat %s: %w", queue, err)
	}
	healed.Held, healed.HeldBack, err = d.restoreHolds(ctx, queue, list)
	return healed, err
}

// restoreHolds puts back the holds of list that apply to queue, and the
// queue's marker, unless another worker did first (restoreScript). It
// returns how many tenants it held again and how many of their admitted
// tasks it moved back into their backlogs.
//
// It is called only when the marker is gone, that is when Redis lost its
// data, and the dispatch mode recorded at start (ClaimMode) went with it:
// it records ModeFair again first, so that a process with
// FAIR_DISPATCH=false started after the loss is refused as before it,
// instead of recording its own mode beside the running fair processes (and
// making every fair one that starts later refuse to start). A mode
// recorded meanwhile by such a process is left and reported (an error
// wrapping ErrModeMismatch), once the holds are back. asynq's set of
// queues went too, which the processes write once (publish, and asynq's
// client): it adds queue to it again, or asynq's inspector, the dashboard
// and the queue metrics would list no queue until they restarted.
func (d *Dispatcher) restoreHolds(ctx context.Context, queue string, list []Holding) (tenants, moved int, err error) {
	modeErr := ClaimMode(ctx, d.rdb, ModeFair)
	if modeErr != nil && !errors.Is(modeErr, ErrModeMismatch) {
		return 0, 0, modeErr
	}
	if err := d.rdb.SAdd(ctx, allQueuesKey, queue).Err(); err != nil {
		return 0, 0, fmt.Errorf("fair: register queue %s again: %w", queue, err)
	}
	reasons := map[string]string{}
	var order []string
	for _, h := range list {
		if !h.Reason.valid() || !slices.Contains(h.Queues, queue) {
			continue
		}
		if err := checkTenant(h.TenantID); err != nil {
			return 0, 0, err
		}
		if _, ok := reasons[h.TenantID]; !ok {
			order = append(order, h.TenantID)
		}
		if !strings.Contains(reasons[h.TenantID], string(h.Reason)) {
			reasons[h.TenantID] += string(h.Reason)
		}
	}
	args := append(d.common(1+2*len(order)), len(order))
	for _, t := range order {
		args = append(args, t, reasons[t])
	}
	res, err := restoreScript.Run(ctx, d.rdb, d.scriptKeys(queue), args...).Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("fair: put back the holds of %d tenants in %s: %w", len(order), queue, err)
	}
	if len(res) != 3 {
		return 0, 0, fmt.Errorf("fair: put back holds in %s: unexpected reply %v", queue, res)
	}
	d.observe(queue, res[2])
	return asInt(res[0]), asInt(res[1]), modeErr
}

// ErrDrained is returned (wrapped) by Park, Gate and GateRun for a task
// that a drain of its tenant discarded while its worker was still handing
// it back, and that asynq brought back to a worker all the same (the
// hand-back lost its lease and asynq's recoverer retried the task, or a
// shutdown put it back into the pending list). The drain counted it as
// discarded: it must not run. The worker hands it back with
// asynq.RevokeTask and does not report it.
var ErrDrained = errors.New("task discarded by a drain of its tenant")

// drainedFor is how long a drain keeps the mark of a task it discarded
// while its worker was handing it back (ErrDrained). asynq lets such a
// task go or brings it back within its lease (30 s), its recoverer's
// cutoff (30 s) and period (1 min) and the retry delay of a recovered
// task, but only while some worker runs asynq's recoverer: a task left
// active by workers that all stopped comes back whenever one starts, and
// its mark must still be there then. So a mark lasts a day, which only
// bounds the marks of tasks asynq never lets go; a worker's heartbeat drops
// it as soon as asynq has let the task go (a few per heartbeat), and an
// enqueue that adds the id anew ends it.
const drainedFor = 24 * time.Hour

// Park is ParkRun without a run token, as a worker of the release before
// run tokens parks: it ends whatever run of the task id is admitted.
func (d *Dispatcher) Park(ctx context.Context, queue, taskID, tenantID, typ string) (bool, error) {
	return d.ParkRun(ctx, queue, taskID, tenantID, typ, "")
}

// ParkRun is called by a worker that dequeued a task of a tenant it may
// not run (suspended). When the tenant is held in queue, the task is
// recorded as parked, with its message as asynq holds it, and ParkRun
// returns true: the worker hands the task back with asynq.RevokeTask
// (asynq lets it go without archiving it or counting a retry, also on its
// last attempt), and releasing the hold moves it back into the tenant's
// backlog, at its place by enqueue time, retry count and enqueue time
// kept. It comes back only once the hand-back can no longer arrive: asynq
// sends a hand-back whose Redis call failed again until the attempt's
// lease runs out, and applied after a new run of the id was admitted and
// taken, it would delete that run from asynq's lists. So a task asynq let
// go is released no earlier than one and a half leases (Config.Lease:
// 45 s) after the park, by the first heartbeat or release after that.
//
// run names the run the worker's attempt runs under: the task's
// RunHeader on a first attempt, the token GateRun gave a retry; "" when
// it knows none. ParkRun then ends that run only: when the dispatcher has
// admitted a later run of the task id (this attempt's lease ran out and
// the id came back, so the call is late), it changes nothing and returns
// false, and the worker lets the attempt end as it would for a tenant not
// held (asynq ignores the end of an attempt whose lease ran out).
//
// False also means the tenant is not held here (it was resumed since):
// the caller retries the task soon instead. A task a drain discarded
// (ErrDrained) is neither.
func (d *Dispatcher) ParkRun(ctx context.Context, queue, taskID, tenantID, typ, run string) (bool, error) {
	if err := errors.Join(checkQueue(queue), checkTenant(tenantID), checkType(typ)); err != nil {
		return false, err
	}
	args := append(d.common(4), taskID, tenantID, typ, run)
	s, err := parkScript.Run(ctx, d.rdb, d.scriptKeys(queue), args...).Text()
	if err != nil {
		return false, fmt.Errorf("fair: park task %s of tenant %s: %w", taskID, tenantID, err)
	}
	if s == "drained" {
		return false, fmt.Errorf("fair: park task %s of tenant %s: %w", taskID, tenantID, ErrDrained)
	}
	return s == "parked", nil
}

// Gate is called by a worker about to run a task that asynq retried: such
// a task comes back from asynq's retry set into its pending list, past
// admission. An admitted task, or one the tenant's running cap has room
// for (it is then counted as running until its report), may run: Gate
// returns false. Otherwise (the tenant is at its cap, held, or being
// drained) the task is recorded as parked, with its message, and Gate
// returns true: the worker hands it back with asynq.RevokeTask (no retry
// counted, not archived on its last attempt), and a heartbeat puts it back
// into the tenant's backlog, in front of the tasks waiting when it was
// parked (as for ParkRun, once its hand-back can no longer arrive), from
// where admission runs it in turn. A worker also asks it about a first
// attempt whose message names no run (RunHeader): a task parked here that
// asynq put back into its pending list instead of letting it go, which
// would otherwise run past the gate and again once released. A task a
// drain discarded fails with ErrDrained.
func (d *Dispatcher) Gate(ctx context.Context, queue, taskID, tenantID, typ string) (parked bool, err error) {
	parked, _, err = d.GateRun(ctx, queue, taskID, tenantID, typ)
	return parked, err
}

// GateRun is Gate, and for a task that may run also the run token its
// report carries (Report.Run): the attempt runs as a run of its own, which
// a late report of the attempt before it cannot end.
func (d *Dispatcher) GateRun(ctx context.Context, queue, taskID, tenantID, typ string) (parked bool, run string, err error) {
	if err := errors.Join(checkQueue(queue), checkTenant(tenantID), checkType(typ)); err != nil {
		return false, "", err
	}
	args := append(d.common(3), taskID, tenantID, typ)
	s, err := gateScript.Run(ctx, d.rdb, d.scriptKeys(queue), args...).Text()
	if err != nil {
		return false, "", fmt.Errorf("fair: gate retried task %s of tenant %s: %w", taskID, tenantID, err)
	}
	if s == "drained" {
		return false, "", fmt.Errorf("fair: gate task %s of tenant %s: %w", taskID, tenantID, ErrDrained)
	}
	s, run, _ = strings.Cut(s, "\t")
	return s == "parked", run, nil
}

// Reason is why a tenant's backlog is held.
type Reason string

// Hold reasons. A tenant is held while it has at least one.
const (
	// Suspended: the tenant is suspended; its ordinary work waits.
	Suspended Reason = "s"
	// Paused: an operator paused the tenant's queue.
	Paused Reason = "p"
	// Moving: a move of the tenant between databases holds its work; an
	// operator's pause and resume meanwhile are Paused, apart from it.
	Moving Reason = "m"
)

func (r Reason) valid() bool { return r == Suspended || r == Paused || r == Moving }

// Hold adds reason to the tenant's hold in each queue: nothing of its
// backlog is admitted until every reason is released, and its admitted
// tasks that asynq has not started yet go back to the front of its
// backlog, in order. It returns how many went back.
func (d *Dispatcher) Hold(ctx context.Context, tenantID string, reason Reason, queues ...string) (int, error) {
	moved, _, err := d.hold(ctx, tenantID, reason, true, queues)
	return moved, err
}

// Release removes reason from the tenant's hold in each queue. Once no
// reason is left, tasks parked while it was held go back into its backlog
// (in enqueue-time order, ahead of the tasks enqueued after them) and
// admission resumes. A parked task that a worker is still handing back to
// asynq is released by retrying for up to a second; the count of those
// that could not be released yet is returned (once asynq has let them go,
// any worker's next heartbeat, Serve, puts them back in the backlog). A
// task parked less than ParkRun's hand-back time ago is not counted: the
// first heartbeat after that time releases it.
func (d *Dispatcher) Release(ctx context.Context, tenantID string, reason Reason, queues ...string) (int, error) {
	var stuck int
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		flag := "0"
		if attempt > 0 {
			flag = "2" // release parked tasks only: a Hold made since stands
		}
		_, stuck, err = d.holdFlag(ctx, tenantID, reason, flag, queues)
		if err != nil || stuck == 0 {
			return 0, err
		}
		select {
		case <-ctx.Done():
			return stuck, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return stuck, nil
}

// HeldFor reports whether the tenant is held for reason in queue. It
// reads only the tenant's hold reasons there.
func (d *Dispatcher) HeldFor(ctx context.Context, tenantID string, reason Reason, queue string) (bool, error) {
	if err := checkTenant(tenantID); err != nil {
		return false, err
	}
	if !reason.valid() {
		return false, fmt.Errorf("fair: invalid hold reason %q", reason)
	}
	if err := checkQueue(queue); err != nil {
		return false, err
	}
	h, err := d.rdb.HGet(ctx, keys(queue)[0]+"hold", tenantID).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("fair: hold of tenant %s in %s: %w", tenantID, queue, err)
	}
	return strings.Contains(h, string(reason)), nil
}

// Held returns the tenants held for reason in any of queues, sorted and
// each once. It reads only the hold reasons (a hash of the held tenants).
func (d *Dispatcher) Held(ctx context.Context, reason Reason, queues ...string) ([]string, error) {
	if !reason.valid() {
		return nil, fmt.Errorf("fair: invalid hold reason %q", reason)
	}
	seen := map[string]bool{}
	for _, q := range queues {
		if err := checkQueue(q); err != nil {
			return nil, err
		}
		it := d.rdb.HScan(ctx, keys(q)[0]+"hold", 0, "", 500).Iterator()
		for it.Next(ctx) {
			tenant := it.Val()
			if !it.Next(ctx) {
				break
			}
			if strings.Contains(it.Val(), string(reason)) {
				seen[tenant] = true
			}
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("fair: tenants held in %s: %w", q, err)
		}
	}
	return slices.Sorted(maps.Keys(seen)), nil
}

func (d *Dispatcher) hold(ctx context.Context, tenantID string, reason Reason, set bool, queues []string) (moved, stuck int, err error) {
	flag := "0"
	if set {
		flag = "1"
	}
	return d.holdFlag(ctx, tenantID, reason, flag, queues)
}

// holdFlag runs holdScript with ARGV[12] flag: "1" set, "0" clear, "2"
// release parked tasks only if no reason is left (Release's retries).
func (d *Dispatcher) holdFlag(ctx context.Context, tenantID string, reason Reason, flag string, queues []string) (moved, stuck int, err error) {
	if err := checkTenant(tenantID); err != nil {
		return 0, 0, err
	}
	if !reason.valid() {
		return 0, 0, fmt.Errorf("fair: invalid hold reason %q", reason)
	}
	for _, q := range queues {
		if err := checkQueue(q); err != nil {
			return moved, stuck, err
		}
		args := append(d.common(3), tenantID, string(reason), flag)
		res, err := holdScript.Run(ctx, d.rdb, d.scriptKeys(q), args...).Slice()
		if err != nil {
			return moved, stuck, fmt.Errorf("fair: hold tenant %s in %s: %w", tenantID, q, err)
		}
		if len(res) >= 2 {
			moved += asInt(res[0])
			stuck += asInt(res[1])
		}
		if len(res) == 3 {
			d.observe(q, res[2]) // what the release admitted
		}
	}
	return moved, stuck, nil
}

// Drained counts what Drain discarded.
type Drained struct {
	// Waiting were in the tenant's backlog.
	Waiting int `json:"waiting"`
	// Admitted were in asynq's pending list, not started.
	Admitted int `json:"admitted"`
	// Parked were handed back to asynq while the tenant was held (or a
	// retry at its running cap, or while it was drained: parked by the
	// gate, the dispatcher keeping them).
	Parked int `json:"parked"`
	// Retrying were in asynq's retry set, waiting for their next attempt
	// after a failed one, or in its pending list once due (asynq's
	// forwarder moved them there, from its retry or its scheduled set),
	// not yet taken by a worker. The retry of a task that was running when
	// the drain began is not one of them: it stays.
	Retrying int `json:"retrying"`
	// Scheduled were in asynq's scheduled set, waiting for their time.
	Scheduled int `json:"scheduled"`
}

// Total is the number of tasks discarded.
func (d Drained) Total() int {
	return d.Waiting + d.Admitted + d.Parked + d.Retrying + d.Scheduled
}

// Drain discards the tenant's tasks that have not started, in each queue:
// its backlog, its admitted tasks still pending in asynq and its parked
// tasks, also one its worker is still handing back to asynq (should asynq
// bring that one back to a worker, it is handed back again unrun:
// ErrDrained), and with Config.TaskIDs its tasks in asynq's retry and
// scheduled sets. Running tasks finish. Nothing of another tenant is
// touched.
//
// In a queue it discards what waited when it began, all of it, in steps
// of drainStep tasks: tasks enqueued meanwhile, and tasks a hold or
// release puts back into the backlog between its steps, stay (drains of
// one tenant running at once share the work). Then it goes through the
// queue's scheduled and retry sets and its pending list, in that order,
// drainScan members per script call (see unscheduleScript): asynq's
// forwarder moves waiting tasks from either set into the pending list
// only, so a task that waited in asynq when the drain began is discarded
// wherever the forwarder moves it meanwhile (unless a worker takes it
// first: it runs). A task asynq held as active when the drain began was
// running: should its attempt fail meanwhile, its retry stays. So does
// the retry of a task admitted while the drain goes through asynq's sets
// and pending list (enqueued after the drain began, or put back into the
// backlog), should it fail meanwhile: it did not wait when the drain
// began.
func (d *Dispatcher) Drain(ctx context.Context, tenantID string, queues ...string) (Drained, error) {
	var out Drained
	if err := checkTenant(tenantID); err != nil {
		return out, err
	}
	var tok [8]byte
	_, _ = rand.Read(tok[:]) // never fails (crypto/rand)
	token := hex.EncodeToString(tok[:])
	var stems []string
	if d.cfg.TaskIDs != nil {
		stems = d.cfg.TaskIDs(tenantID)
	}
	// step runs one drain step in q; it returns whether the drain's list
	// still holds tasks.
	step := func(q, first string) (more bool, err error) {
		args := append(d.common(5+len(stems)), tenantID, drainStep, first, token, drainedFor.Milliseconds())
		if first == "1" {
			for _, s := range stems {
				args = append(args, s)
			}
		}
		res, err := drainScript.Run(ctx, d.rdb, d.scriptKeys(q), args...).Slice()
		if err != nil {
			return false, fmt.Errorf("fair: drain tenant %s in %s: %w", tenantID, q, err)
		}
		if len(res) != 5 {
			return false, fmt.Errorf("fair: drain tenant %s in %s: unexpected reply %v", tenantID, q, res)
		}
		d.observe(q, res[4]) // what the room it made admitted
		discarded := asInt(res[0])
		out.Waiting += discarded
		out.Admitted += asInt(res[1])
		out.Parked += asInt(res[2])
		return asInt(res[3]) > 0 && discarded > 0, nil
	}
	for _, q := range queues {
		if err := checkQueue(q); err != nil {
			return out, err
		}
		more, err := step(q, "1")
		for err == nil && more {
			more, err = step(q, "0")
		}
		if err != nil {
			return out, err
		}
		if len(stems) == 0 {
			continue
		}
		// The sets a waiting task leaves before the list it goes to.
		for _, set := range []struct {
			name string
			n    *int
		}{{"scheduled", &out.Scheduled}, {"retry", &out.Retrying}, {"pending", &out.Retrying}} {
			n, err := d.unschedule(ctx, q, set.name, token, tenantID, stems)
			*set.n += n
			if err != nil {
				return out, fmt.Errorf("fair: drain tenant %s in %s: %s: %w", tenantID, q, set.name, err)
			}
		}
		// What was parked while the scans ran, and the end of the scans.
		parked, err := drainScansEndScript.Run(ctx, d.rdb, d.scriptKeys(q), append(d.common(3), tenantID, token, drainedFor.Milliseconds())...).Int()
		if err != nil {
			return out, fmt.Errorf("fair: drain tenant %s in %s: %w", tenantID, q, err)
		}
		out.Parked += parked
	}
	return out, nil
}

// drainScan is how many members of asynq's retry or scheduled set one
// unscheduleScript call looks at (ZSCAN's COUNT): about a millisecond of
// Redis at a time.
const drainScan = 1000

// drainScanFor is how long after a drain's last call through asynq's sets
// and pending list its tenant's scan mark lasts: meanwhile admission notes
// the tenant's admitted tasks for it and the tenant's parked tasks it
// would discard stay parked. A drain whose calls stop for that long is
// taken for cut off (its caller killed), and a worker heartbeat removes
// what it left of its scans.
const drainScanFor = time.Minute

// unschedule deletes the tasks whose ids have one of stems from asynq's
// set ("retry" or "scheduled") of queue q, or, with "pending", those of
// its pending list that no admission put there (retries and scheduled
// tasks asynq's forwarder moved there when they came due), the whole set
// or list scanned drainScan members per script call, and returns how many
// it deleted, dropping the parked record tenantID may have of such a task
// (parked while the drain ran, then put back into asynq's lists). It
// leaves the tasks in the drain's (token's) set of the tasks asynq held as
// active when it began, and of those admitted since. Each call moves the
// drain's scan mark on (drainScanFor).
func (d *Dispatcher) unschedule(ctx context.Context, q, set, token, tenantID string, stems []string) (int, error) {
	script := unscheduleScript
	if set == "pending" {
		script = unpendScript
	}
	args := make([]any, 0, 7+len(stems))
	args = append(args, set, "0", drainScan, "drr:"+tenantID+":"+token, tenantID, token, "")
	for _, s := range stems {
		args = append(args, s)
	}
	var n int
	for {
		args[6] = d.nowMS()
		res, err := script.Run(ctx, d.rdb, d.scriptKeys(q), args...).Slice()
		if err != nil {
			return n, err
		}
		if len(res) < 2 {
			return n, fmt.Errorf("unexpected reply %v", res)
		}
		n += asInt(res[1])
		if len(res) == 3 { // unpendScript: the next index, and whether the list ended
			if asInt(res[2]) == 1 {
				return n, nil
			}
			args[1] = asInt(res[0])
			continue
		}
		cursor, _ := res[0].(string) // ZSCAN's: "0" when the scan is done
		if cursor == "" || cursor == "0" {
			return n, nil
		}
		args[1] = cursor
	}
}

// drainStep is the most waiting tasks one drain or forget script removes:
// about 10 ms of Redis at a time, so a tenant with a million waiting
// tasks does not stop every worker's dequeue for seconds.
const drainStep = 5000

// Forget removes everything the dispatcher keeps of an erased tenant in
// each queue (its state, backlog, hold reasons, cost estimates). Tasks of
// the tenant still in asynq are not touched. What the dispatcher keeps by
// task id or run rather than by tenant (a parked task's hand-back time, the
// estimate of a run the lease check ended, for its late report) expires on
// its own, within the hour.
func (d *Dispatcher) Forget(ctx context.Context, tenantID string, queues ...string) error {
	if err := checkTenant(tenantID); err != nil {
		return err
	}
	for _, q := range queues {
		if err := checkQueue(q); err != nil {
			return err
		}
		for {
			done, err := forgetScript.Run(ctx, d.rdb, d.scriptKeys(q), append(d.common(2), tenantID, drainStep)...).Int()
			if err != nil {
				return fmt.Errorf("fair: forget tenant %s in %s: %w", tenantID, q, err)
			}
			if done == 1 {
				break
			}
		}
	}
	return nil
}

// QueueStats is one tenant's state in one queue.
type QueueStats struct {
	Queue string `json:"queue"`
	// Waiting tasks are in the tenant's backlog, or set aside by a drain
	// that has not discarded them yet.
	Waiting int `json:"waiting"`
	// Admitted tasks are in asynq, pending or running.
	Admitted int `json:"admitted"`
	// Running tasks are admitted tasks a worker is running.
	Running int `json:"running"`
	// Parked tasks were handed back while the tenant was held.
	Parked int `json:"parked"`
	// WaitingByType counts the backlog by task type.
	WaitingByType map[string]int `json:"waiting_by_type"`
	// OldestWait is how long the oldest waiting task has waited.
	OldestWait time.Duration `json:"-"`
	// OldestWaitSeconds is OldestWait in seconds.
	OldestWaitSeconds float64 `json:"oldest_wait_seconds"`
	// Suspended and Paused are the hold reasons in force; Paused is also
	// true while a move holds the tenant (Moving, which says so alone).
	Suspended bool `json:"suspended"`
	Paused    bool `json:"paused"`
	Moving    bool `json:"moving"`
	// PausedInAsynq is true while the queue is paused in asynq itself
	// (the dashboard's pause, asynq.Inspector.PauseQueue): no worker takes
	// any of its tasks, whatever the dispatcher admits, until it is
	// unpaused there.
	PausedInAsynq bool `json:"paused_in_asynq"`
	// Policy is the policy last enqueued with (or set by SetPolicy); the
	// zero Policy (weight 0) when the queue has none recorded for the
	// tenant: its next enqueue there that adds a task brings one (an
	// enqueue that adds none records nothing for a tenant without state,
	// so a late enqueue after an erasure's Forget leaves nothing).
	Policy Policy `json:"policy"`
}

// Stats returns the tenant's state in each queue.
func (d *Dispatcher) Stats(ctx context.Context, tenantID string, queues ...string) ([]QueueStats, error) {
	if err := checkTenant(tenantID); err != nil {
		return nil, err
	}
	out := make([]QueueStats, 0, len(queues))
	for _, q := range queues {
		if err := checkQueue(q); err != nil {
			return nil, err
		}
		res, err := statsScript.Run(ctx, d.rdb, d.scriptKeys(q), append(d.common(1), tenantID)...).Slice()
		if err != nil {
			return nil, fmt.Errorf("fair: stats of tenant %s in %s: %w", tenantID, q, err)
		}
		if len(res) != 11 {
			return nil, fmt.Errorf("fair: stats: unexpected reply %v", res)
		}
		s := QueueStats{Queue: q, WaitingByType: map[string]int{}}
		s.Waiting = asInt(res[0])
		s.Admitted = asInt(res[1])
		s.Running = asInt(res[2])
		s.Parked = asInt(res[3])
		if oldest := asInt(res[4]); oldest > 0 {
			now := time.UnixMilli(int64(asInt(res[10])))
			s.OldestWait = max(now.Sub(time.UnixMilli(int64(oldest))), 0)
			s.OldestWaitSeconds = s.OldestWait.Seconds()
		}
		h, _ := res[5].(string)
		s.Suspended = strings.Contains(h, string(Suspended))
		s.Moving = strings.Contains(h, string(Moving))
		s.Paused = strings.Contains(h, string(Paused)) || s.Moving
		s.Policy = Policy{Weight: asInt(res[6]), MaxRunning: asInt(res[7]), MaxWaiting: asInt(res[8])}
		types, _ := res[9].([]any)
		for i := 0; i+1 < len(types); i += 2 {
			name, _ := types[i].(string)
			s.WaitingByType[name] = asInt(types[i+1])
		}
		out = append(out, s)
	}
	paused, err := d.pausedInAsynq(ctx, queues)
	if err != nil {
		return nil, fmt.Errorf("fair: stats of tenant %s: %w", tenantID, err)
	}
	for i := range out {
		out[i].PausedInAsynq = paused[i]
	}
	return out, nil
}

// asynqPausedKey is the key asynq sets while queue q is paused in asynq
// itself (asynq.Inspector.PauseQueue, the dashboard's pause): its
// processors take none of the queue's tasks.
func asynqPausedKey(q string) string { return keys(q)[1] + "paused" }

// pausedInAsynq reports, for each of queues, whether it is paused in
// asynq itself (asynqPausedKey), in one round trip.
func (d *Dispatcher) pausedInAsynq(ctx context.Context, queues []string) ([]bool, error) {
	pipe := d.rdb.Pipeline()
	found := make([]*redis.IntCmd, len(queues))
	for i, q := range queues {
		found[i] = pipe.Exists(ctx, asynqPausedKey(q))
	}
	if len(queues) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("read which queues asynq pauses: %w", err)
		}
	}
	paused := make([]bool, len(queues))
	for i, f := range found {
		paused[i] = f.Val() > 0
	}
	return paused, nil
}

// asInt reads an integer from a script reply (an integer or a numeric
// string).
func asInt(v any) int {
	switch v := v.(type) {
	case int64:
		return int(v)
	case string:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) {
			return 0
		}
		return int(f)
	}
	return 0
}

// WaitingTask is a task in a tenant's backlog.
type WaitingTask struct {
	ID       string
	Type     string
	TenantID string
	Queue    string
	// Enqueued is when it entered the backlog.
	Enqueued time.Time
	// Message is the asynq message it will be admitted with.
	Message Message
}

// Waiting returns the task with id taskID if it waits in the backlog of
// one of queues (false otherwise), looking in all of them in one pipeline.
func (d *Dispatcher) Waiting(ctx context.Context, taskID string, queues ...string) (WaitingTask, bool, error) {
	pipe := d.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(queues))
	for i, q := range queues {
		if err := checkQueue(q); err != nil {
			return WaitingTask{}, false, err
		}
		cmds[i] = pipe.HGet(ctx, keys(q)[0]+"msg", taskID)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return WaitingTask{}, false, fmt.Errorf("fair: look up waiting task: %w", err)
	}
	for i, cmd := range cmds {
		v, err := cmd.Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return WaitingTask{}, false, fmt.Errorf("fair: look up waiting task in %s: %w", queues[i], err)
		}
		w, err := parseWaiting(queues[i], taskID, v)
		return w, err == nil, err
	}
	return WaitingTask{}, false, nil
}

// Parked returns task taskID of tenantID if the dispatcher keeps it parked
// with its message in one of queues (Park, Gate: asynq let it go, or is
// letting it go, and the tenant's release or a heartbeat puts it back into
// the backlog), looking in all of them in one pipeline. Its Enqueued is
// its enqueue time as recorded when it was parked. A task parked in
// asynq's retry set (by the previous release, or when asynq did not hold
// it as active) is asynq's to report: false.
func (d *Dispatcher) Parked(ctx context.Context, tenantID, taskID string, queues ...string) (WaitingTask, bool, error) {
	if checkTenant(tenantID) != nil {
		return WaitingTask{}, false, nil // no key of it: nothing parked
	}
	pipe := d.rdb.Pipeline()
	// Per queue: the record with its message (kept:), then one of an
	// earlier build that kept it in parked: too.
	cmds := make([]*redis.StringCmd, 0, 2*len(queues))
	for _, q := range queues {
		if err := checkQueue(q); err != nil {
			return WaitingTask{}, false, err
		}
		p := keys(q)[0]
		cmds = append(cmds, pipe.HGet(ctx, p+"kept:"+tenantID, taskID), pipe.HGet(ctx, p+"parked:"+tenantID, taskID))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return WaitingTask{}, false, fmt.Errorf("fair: look up parked task: %w", err)
	}
	for i, cmd := range cmds {
		queue := queues[i/2]
		v, err := cmd.Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return WaitingTask{}, false, fmt.Errorf("fair: look up parked task in %s: %w", queue, err)
		}
		f := strings.SplitN(v, "\t", 3)
		if len(f) != 3 {
			continue // parked in asynq's retry set: no message kept here
		}
		ms, _ := strconv.ParseFloat(f[1], 64)
		msg, err := DecodeMessage([]byte(f[2]))
		if err != nil {
			return WaitingTask{}, false, fmt.Errorf("fair: parked task %.70q in %s: %w", taskID, queue, err)
		}
		return WaitingTask{ID: taskID, Type: f[0], TenantID: tenantID, Queue: queue, Enqueued: time.UnixMilli(int64(ms)), Message: msg}, true, nil
	}
	return WaitingTask{}, false, nil
}

// parseWaiting reads an entry of a queue's msg hash.
func parseWaiting(queue, taskID, v string) (WaitingTask, error) {
	f := strings.SplitN(v, "\t", 4)
	if len(f) != 4 {
		return WaitingTask{}, fmt.Errorf("fair: waiting task %.70q in %s: malformed entry", taskID, queue)
	}
	ms, _ := strconv.ParseInt(f[2], 10, 64)
	msg, err := DecodeMessage([]byte(f[3]))
	if err != nil {
		return WaitingTask{}, fmt.Errorf("fair: waiting task %.70q in %s: %w", taskID, queue, err)
	}
	return WaitingTask{ID: taskID, Type: f[0], TenantID: f[1], Queue: queue, Enqueued: time.UnixMilli(ms), Message: msg}, nil
}

// Depth is one tenant's backlog in a queue.
type Depth struct {
	TenantID string `json:"tenant_id"`
	Waiting  int    `json:"waiting"`
}

// depths reads a depth sorted set's members with their scores.
func depths(zs []redis.Z) []Depth {
	out := make([]Depth, 0, len(zs))
	for _, z := range zs {
		id, _ := z.Member.(string)
		out = append(out, Depth{TenantID: id, Waiting: int(z.Score)})
	}
	return out
}

// Top returns the k tenants with the most waiting tasks in queue, largest
// first, and the number of tasks waiting in the queue in all.
func (d *Dispatcher) Top(ctx context.Context, queue string, k int) ([]Depth, int, error) {
	if err := checkQueue(queue); err != nil {
		return nil, 0, err
	}
	p := keys(queue)[0]
	pipe := d.rdb.Pipeline()
	top := pipe.ZRevRangeWithScores(ctx, p+"depth", 0, int64(max(k, 1)-1))
	total := pipe.HLen(ctx, p+"msg")
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, 0, fmt.Errorf("fair: top tenants of %s: %w", queue, err)
	}
	return depths(top.Val()), int(total.Val()), nil
}

// Overview is one queue of fair dispatch across all its tenants: what an
// operator looks at first to see whether work waits, for whom, and
// whether workers serve it.
type Overview struct {
	Queue string `json:"queue"`
	// Waiting is the tasks in all tenants' backlogs, BacklogTenants the
	// number of tenants with at least one.
	Waiting        int `json:"waiting"`
	BacklogTenants int `json:"backlog_tenants"`
	// Admitted is the tasks admitted to asynq and not reported finished:
	// Pending of them wait in asynq's pending list for a worker.
	Admitted int `json:"admitted"`
	Pending  int `json:"pending"`
	// Workers and WorkerSlots are the workers serving the queue whose
	// heartbeat is current, and their summed concurrency. No workers with
	// tasks waiting means nothing runs.
	Workers     int `json:"workers"`
	WorkerSlots int `json:"worker_slots"`
	// HeldTenants is the number of tenants held (suspended or paused).
	HeldTenants int `json:"held_tenants"`
	// Parked is the tasks of held tenants parked until their release: a
	// parked task whose message the dispatcher keeps is in neither asynq's
	// lists nor a backlog, so a queue is empty only when this is 0 too.
	Parked int `json:"parked"`
	// PausedInAsynq is true while the queue is paused in asynq itself
	// (the dashboard's pause, asynq.Inspector.PauseQueue): no worker takes
	// any of its tasks, whatever the dispatcher admits, until it is
	// unpaused there.
	PausedInAsynq bool `json:"paused_in_asynq"`
	// Top is the tenants with the most waiting tasks, largest first.
	Top []Depth `json:"top"`
}

// Overview returns queue's Overview with its k largest backlogs (at
// least one), in one round trip, one more when workers are alive and one
// more when tenants have parked tasks.
func (d *Dispatcher) Overview(ctx context.Context, queue string, k int) (Overview, error) {
	if err := checkQueue(queue); err != nil {
		return Overview{}, err
	}
	ks := keys(queue)
	p := ks[0]
	pipe := d.rdb.Pipeline()
	// The workers' heartbeat expiries are in the scripts' clock (Redis's
	// unless Config.Now is set): read it from the queue's Redis.
	clock := pipe.Eval(ctx, nowScript, ks, d.common(0)...)
	top := pipe.ZRevRangeWithScores(ctx, p+"depth", 0, int64(max(k, 1)-1))
	tenants := pipe.ZCard(ctx, p+"depth")
	waiting := pipe.HLen(ctx, p+"msg")
	admitted := pipe.HLen(ctx, p+"adm")
	pending := pipe.LLen(ctx, ks[1]+"pending")
	held := pipe.HLen(ctx, p+"hold")
	workers := pipe.ZRangeWithScores(ctx, p+"workers", 0, -1)
	keptT := pipe.SMembers(ctx, p+"keptt")
	parkedT := pipe.SMembers(ctx, p+"parkedt")
	pausedInAsynq := pipe.Exists(ctx, asynqPausedKey(queue))
	if _, err := pipe.Exec(ctx); err != nil {
		return Overview{}, fmt.Errorf("fair: overview of %s: %w", queue, err)
	}
	now := float64(asInt(clock.Val()))
	var alive []string
	for _, w := range workers.Val() {
		if w.Score > now {
			alive = append(alive, fmt.Sprint(w.Member))
		}
	}
	o := Overview{
		Queue: queue, Waiting: int(waiting.Val()), BacklogTenants: int(tenants.Val()),
		Admitted: int(admitted.Val()), Pending: int(pending.Val()), HeldTenants: int(held.Val()),
		Workers: len(alive), Top: depths(top.Val()), PausedInAsynq: pausedInAsynq.Val() > 0,
	}
	if len(keptT.Val())+len(parkedT.Val()) > 0 {
		// Tenants with parked tasks are few (held ones that had tasks
		// running): one more round trip, almost never taken.
		pipe := d.rdb.Pipeline()
		var lens []*redis.IntCmd
		for _, t := range keptT.Val() {
			lens = append(lens, pipe.HLen(ctx, p+"kept:"+t))
		}
		for _, t := range parkedT.Val() {
			lens = append(lens, pipe.HLen(ctx, p+"parked:"+t))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return Overview{}, fmt.Errorf("fair: overview of %s: parked tasks: %w", queue, err)
		}
		for _, n := range lens {
			o.Parked += int(n.Val())
		}
	}
	if o.Workers > 0 {
		conc, err := d.rdb.HMGet(ctx, p+"conc", alive...).Result()
		if err != nil {
			return Overview{}, fmt.Errorf("fair: overview of %s: worker slots: %w", queue, err)
		}
		for _, c := range conc {
			o.WorkerSlots += asInt(c)
		}
	}
	return o, nil
}
