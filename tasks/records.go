package tasks

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/tenantctx"
)

// Defaults of TaskRecordsOptions.
const (
	DefaultTaskRecordsPrefix    = "tenantworker:taskrecords:"
	DefaultTaskRecordsPerTenant = 1000
	// DefaultTaskRecordsTTL is how long asynq keeps an archived task.
	DefaultTaskRecordsTTL = 90 * 24 * time.Hour
)

// TaskRecordsOptions configures TaskRecords. The zero value is usable.
type TaskRecordsOptions struct {
	// KeyPrefix starts every Redis key; "" means DefaultTaskRecordsPrefix.
	// The tenant id is a hash tag, so one tenant's keys share a Redis
	// Cluster slot.
	KeyPrefix string
	// PerTenant is how many records one tenant keeps; its oldest go first.
	// 0 means DefaultTaskRecordsPerTenant.
	PerTenant int
	// TTL is how long a record is kept; 0 means DefaultTaskRecordsTTL.
	TTL time.Duration
}

// TaskRecord is what is kept of an archived task for its tenant.
type TaskRecord struct {
	TaskID  string `json:"task_id"`
	Type    string `json:"type"`
	Queue   string `json:"queue"`
	Retried int    `json:"retried"`
	// Reason is what the tenant is shown as the task's last error: one of
	// a fixed set of stable texts chosen by the worker (worker.PublicReason),
	// never an error message, which may hold SQL or mail server details.
	Reason string `json:"reason"`
	// ArchivedAt is when the task was archived.
	ArchivedAt time.Time `json:"archived_at"`
}

// TaskRecords keeps, per tenant, a record of each task archived for good,
// in a capped structure of that tenant's own in Redis: asynq keeps at most
// 10,000 archived tasks per queue for all tenants together, so one tenant's
// failures could evict another tenant's; here a tenant's volume evicts only
// its own records (P15 in docs/architecture.md). The worker writes a record
// when it archives a task (Put); Enqueuer.TenantTask falls back to it when
// asynq no longer has the task, and the API takes the reason a tenant sees
// from it (Get). A new task with the same id drops the old record
// (Forget, called by Enqueuer.Enqueue).
//
// Layout, under KeyPrefix (P) and the tenant id (T):
//
//	P{T}:index    sorted set: task id scored by archive time (ms)
//	P{T}:records  hash: task id -> JSON TaskRecord
//	P{T}:taken:K  list: id, score, JSON of the records an enqueue's take
//	              (token K) dropped, for a take sent again (a minute)
//
// It is safe for concurrent use.
type TaskRecords struct {
	rdb  redis.UniversalClient
	opts TaskRecordsOptions
	// reads holds a token for each Get running, those whose callers gave
	// up included (see Get).
	reads chan struct{}
}

// NewTaskRecords returns the records on rdb.
func NewTaskRecords(rdb redis.UniversalClient, opts TaskRecordsOptions) *TaskRecords {
	opts.KeyPrefix = cmp.Or(opts.KeyPrefix, DefaultTaskRecordsPrefix)
	opts.PerTenant = cmp.Or(max(opts.PerTenant, 0), DefaultTaskRecordsPerTenant)
	opts.TTL = cmp.Or(max(opts.TTL, 0), DefaultTaskRecordsTTL)
	return &TaskRecords{rdb: rdb, opts: opts, reads: make(chan struct{}, maxLookups)}
}

// Redis returns the client the records are kept on: the Redis of asynq's
// queues, whose task state the worker reads before it writes a record.
func (r *TaskRecords) Redis() redis.UniversalClient { return r.rdb }

// keys returns the index and record keys of a tenant.
func (r *TaskRecords) keys(tenantID string) []string {
	base := r.opts.KeyPrefix + "{" + tenantID + "}:"
	return []string{base + "index", base + "records"}
}

// putScript stores a record and trims the tenant's records to the cap and
// the TTL. KEYS[1] index, KEYS[2] records. ARGV[1] task id, ARGV[2] JSON,
// ARGV[3] now (ms), ARGV[4] cap, ARGV[5] TTL (ms).
var putScript = redis.NewScript(`
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
while excess > 0 do
  local n = math.min(excess, 500)
  local old = redis.call('ZRANGE', KEYS[1], 0, n - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 1)
  redis.call('HDEL', KEYS[2], unpack(old))
  excess = excess - n
end
local cutoff = tonumber(ARGV[3]) - tonumber(ARGV[5])
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, 500)
if #expired > 0 then
  redis.call('ZREM', KEYS[1], unpack(expired))
  redis.call('HDEL', KEYS[2], unpack(expired))
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 1
`)

// Put stores rec for tenantID, replacing any record of the same task, and
// drops the tenant's oldest records past the cap.
func (r *TaskRecords) Put(ctx context.Context, tenantID string, rec TaskRecord) error {
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return fmt.Errorf("put task record: %w", err)
	}
	if rec.TaskID == "" || len(rec.TaskID) > maxTaskIDLen {
		return fmt.Errorf("put task record: task id of %d bytes", len(rec.TaskID))
	}
	if rec.ArchivedAt.IsZero() {
		rec.ArchivedAt = time.Now()
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("put task record %s: %w", rec.TaskID, err)
	}
	err = putScript.Run(ctx, r.rdb, r.keys(tenantID),
		rec.TaskID, raw, rec.ArchivedAt.UnixMilli(), r.opts.PerTenant, r.opts.TTL.Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("put task record %s of tenant %s: %w", rec.TaskID, tenantID, err)
	}
	return nil
}

// Get returns the tenant's record of taskID, or ErrTaskNotFound. Another
// tenant's record is never found: each tenant has its own keys.
//
// Like Enqueuer.TenantTask, it returns when ctx ends (an error matching
// ctx's), also while Redis does not answer, which the Redis client bounds
// by its own timeouts, not by ctx: the read runs in a goroutine of its
// own, at most maxLookups at once, those whose callers gave up included.
func (r *TaskRecords) Get(ctx context.Context, tenantID, taskID string) (TaskRecord, error) {
	if tenantctx.ValidateID(tenantID) != nil || taskID == "" || len(taskID) > maxTaskIDLen {
		return TaskRecord{}, ErrTaskNotFound
	}
	select {
	case r.reads <- struct{}{}:
	case <-ctx.Done():
		return TaskRecord{}, fmt.Errorf("get task record %.64q: waiting for a read to end: %w", taskID, ctx.Err())
	}
	type answer struct {
		rec TaskRecord
		err error
	}
	done := make(chan answer, 1)
	go func() {
		defer func() { <-r.reads }()
		rec, err := r.get(ctx, tenantID, taskID)
		done <- answer{rec, err}
	}()
	select {
	case a := <-done:
		return a.rec, a.err
	case <-ctx.Done():
		return TaskRecord{}, fmt.Errorf("get task record %.64q: %w", taskID, ctx.Err())
	}
}

// get is Get's read, run in a goroutine of its own.
func (r *TaskRecords) get(ctx context.Context, tenantID, taskID string) (TaskRecord, error) {
	raw, err := r.rdb.HGet(ctx, r.keys(tenantID)[1], taskID).Bytes()
	if errors.Is(err, redis.Nil) {
		return TaskRecord{}, ErrTaskNotFound
	}
	if err != nil {
		return TaskRecord{}, fmt.Errorf("get task record %.64q: %w", taskID, err)
	}
	var rec TaskRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return TaskRecord{}, fmt.Errorf("decode task record %.64q: %w", taskID, err)
	}
	if time.Since(rec.ArchivedAt) > r.opts.TTL {
		return TaskRecord{}, ErrTaskNotFound
	}
	return rec, nil
}

// forgetScript drops records. KEYS[1] index, KEYS[2] records; ARGV the
// task ids. Before it deletes, it writes the first record back as it is
// (oomGuard): at maxmemory (policy noeviction) Redis refuses that write
// and the script with it, but not the deletions, and a refused enqueue
// must keep the tenant's records.
var forgetScript = redis.NewScript(oomGuard + `
guard(ARGV)
redis.call('ZREM', KEYS[1], unpack(ARGV))
return redis.call('HDEL', KEYS[2], unpack(ARGV))
`)

// oomGuard defines guard(ids), which writes the first record of ids that
// exists back unchanged and reports whether there was one. A script runs
// it before it deletes anything: Redis refuses a write that can grow
// memory (HSET) at maxmemory, and then fails the whole script, while it
// lets deletions through; a script's later writes are not checked once it
// has written. So the enqueue that Redis refuses next finds the tenant's
// records of its task ids where they were (docs/operations.md's "nothing of the
// refused request is kept").
const oomGuard = `
local function guard(ids)
  for _, id in ipairs(ids) do
    local raw = redis.call('HGET', KEYS[2], id)
    if raw then
      redis.call('HSET', KEYS[2], id, raw)
      return true
    end
  end
  return false
end
`

// Forget drops the tenant's records of taskIDs (at most a batch,
// MaxBatch), if any.
func (r *TaskRecords) Forget(ctx context.Context, tenantID string, taskIDs ...string) error {
	if tenantctx.ValidateID(tenantID) != nil || len(taskIDs) == 0 {
		return nil
	}
	args := make([]any, len(taskIDs))
	for i, id := range taskIDs {
		args[i] = id
	}
	// One command, so that an autopipelining client batches it with the
	// enqueue's own.
	if err := forgetScript.Run(ctx, r.rdb, r.keys(tenantID), args...).Err(); err != nil {
		return fmt.Errorf("forget %d task records of tenant %s (first %.64q): %w", len(taskIDs), tenantID, taskIDs[0], err)
	}
	return nil
}

// takeScript drops records and returns them, so that they can be put
// back (restoreScript). KEYS[1] index, KEYS[2] records, KEYS[3] the call's
// own copy of what it dropped; ARGV[1] how long that copy lasts (ms), then
// the task ids. It returns id, score, JSON for each record it dropped.
// go-redis sends a script again after a read timeout or a dropped
// connection, and the caller gets the second run's reply: the copy (its
// key names a token of the call, the same in both runs) makes the second
// run answer what the first dropped too, which a refused enqueue puts
// back. Like forgetScript, it fails at maxmemory before it drops any
// (oomGuard). A tenant without records costs one EXISTS, whatever the
// number of ids: the common case of every render and reminder enqueue.
var takeScript = redis.NewScript(oomGuard + `
local out = redis.call('LRANGE', KEYS[3], 0, -1)
-- Most tenants have no records: then there is nothing to look up per id
-- (and nothing to drop, so nothing for the guard to protect).
if redis.call('EXISTS', KEYS[2]) == 0 then return out end
local ids = { unpack(ARGV, 2) }
if not guard(ids) then return out end
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', KEYS[2], id)
  if raw then
    local score = redis.call('ZSCORE', KEYS[1], id) or '0'
    out[#out + 1] = id
    out[#out + 1] = score
    out[#out + 1] = raw
    redis.call('RPUSH', KEYS[3], id, score, raw)
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
  end
end
redis.call('PEXPIRE', KEYS[3], ARGV[1])
return out
`)

// takenTTL is how long takeScript's copy of what it dropped lasts: longer
// than go-redis takes to send a command again (MaxRetries read timeouts).
const takenTTL = time.Minute

// restoreScript puts back records takeScript dropped, each only while no
// newer record of its task id was written meanwhile. KEYS[1] index,
// KEYS[2] records; ARGV[1] TTL (ms), then id, score, JSON per record.
var restoreScript = redis.NewScript(`
for i = 2, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 2]) == 1 then
    redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
`)

// takenRecords are records take dropped: id, score, JSON for each.
type takenRecords []any

// take drops the tenant's records of taskIDs as Forget does, and returns
// them for restore.
func (r *TaskRecords) take(ctx context.Context, tenantID string, taskIDs ...string) (takenRecords, error) {
	if tenantctx.ValidateID(tenantID) != nil || len(taskIDs) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(taskIDs)+1)
	args = append(args, takenTTL.Milliseconds())
	for _, id := range taskIDs {
		args = append(args, id)
	}
	var tok [8]byte
	_, _ = rand.Read(tok[:]) // never fails (crypto/rand)
	keys := append(r.keys(tenantID), r.opts.KeyPrefix+"{"+tenantID+"}:taken:"+hex.EncodeToString(tok[:]))
	out, err := takeScript.Run(ctx, r.rdb, keys, args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("forget %d task records of tenant %s (first %.64q): %w", len(taskIDs), tenantID, taskIDs[0], err)
	}
	return out, nil
}

// restore puts back records take dropped, except those whose task id got
// a new record since.
func (r *TaskRecords) restore(ctx context.Context, tenantID string, taken takenRecords) error {
	if len(taken) == 0 {
		return nil
	}
	args := append([]any{r.opts.TTL.Milliseconds()}, taken...)
	if err := restoreScript.Run(ctx, r.rdb, r.keys(tenantID), args...).Err(); err != nil {
		return fmt.Errorf("restore %d task records of tenant %s: %w", len(taken)/3, tenantID, err)
	}
	return nil
}

// DeleteTenant drops every record of tenantID, for a tenant that is
// erased: nobody can read them any more.
func (r *TaskRecords) DeleteTenant(ctx context.Context, tenantID string) error {
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return fmt.Errorf("delete task records: %w", err)
	}
	// Both keys carry the tenant's hash tag: one command on a cluster too.
	if err := r.rdb.Del(ctx, r.keys(tenantID)...).Err(); err != nil {
		return fmt.Errorf("delete task records of tenant %s: %w", tenantID, err)
	}
	return nil
}

// TaskInfo returns rec as the TaskInfo of an archived task: no payload,
// the reason as its last error.
func (rec TaskRecord) TaskInfo() *asynq.TaskInfo {
	return &asynq.TaskInfo{
		ID: rec.TaskID, Queue: rec.Queue, Type: rec.Type, State: asynq.TaskStateArchived,
		Retried: rec.Retried, LastErr: rec.Reason, LastFailedAt: rec.ArchivedAt,
	}
}

// WithTaskRecords returns a copy of e that falls back to records in
// TenantTask when asynq no longer has a task, and forgets a task's old
// record when Enqueue enqueues a new task with its id.
func (e *Enqueuer) WithTaskRecords(records *TaskRecords) *Enqueuer {
	c := *e
	c.records = records
	return &c
}

// TaskRecords returns the records e falls back to (WithTaskRecords), or nil.
func (e *Enqueuer) TaskRecords() *TaskRecords { return e.records }

// DeleteTaskRecords drops every record of tenantID's archived tasks (an
// erased tenant's); without records it does nothing.
func (e *Enqueuer) DeleteTaskRecords(ctx context.Context, tenantID string) error {
	if e.records == nil {
		return nil
	}
	return e.records.DeleteTenant(ctx, tenantID)
}

// archivedRecord is TenantTask's fallback: the tenant's record of a task
// asynq no longer has, or ErrTaskNotFound.
func (e *Enqueuer) archivedRecord(ctx context.Context, tenantID, taskID string) (*asynq.TaskInfo, error) {
	if e.records == nil {
		return nil, ErrTaskNotFound
	}
	rec, err := e.records.Get(ctx, tenantID, taskID)
	if err != nil {
		return nil, err
	}
	return rec.TaskInfo(), nil
}

// forgetRecord drops the old record of a task id Enqueue just used for a
// new task; a failure is logged: the enqueue itself succeeded.
func (e *Enqueuer) forgetRecord(ctx context.Context, p Payload, taskID string) {
	if tp, ok := p.(TenantPayload); ok {
		e.forgetRecords(ctx, tp.Owner(), []string{taskID})
	}
}

// takeRecords drops tenantID's old records of the ids of tasks about to
// be enqueued, as forgetRecords does, and returns them for
// restoreRecords; a failure is logged.
func (e *Enqueuer) takeRecords(ctx context.Context, tenantID string, taskIDs []string) takenRecords {
	if e.records == nil || len(taskIDs) == 0 {
		return nil
	}
	taken, err := e.records.take(ctx, tenantID, taskIDs...)
	if err != nil {
		e.logger.WarnContext(ctx, "forget task records", slog.String("tenant_id", tenantID), slog.Int("tasks", len(taskIDs)), slog.Any("error", err))
	}
	return taken
}

// restoreRecords puts back the records takeRecords dropped of the ids
// whose enqueue was refused (not in accepted): no new task took their
// ids, so the tenant must still see its archived tasks. A failure is
// logged.
func (e *Enqueuer) restoreRecords(ctx context.Context, tenantID string, taken takenRecords, accepted map[string]bool) {
	var back takenRecords
	for i := 0; i+2 < len(taken); i += 3 {
		if id, _ := taken[i].(string); !accepted[id] {
			back = append(back, taken[i:i+3]...)
		}
	}
	if len(back) == 0 {
		return
	}
	if err := e.records.restore(context.WithoutCancel(ctx), tenantID, back); err != nil {
		e.logger.WarnContext(ctx, "restore task records of a refused enqueue", slog.String("tenant_id", tenantID),
			slog.Int("tasks", len(back)/3), slog.Any("error", err))
	}
}

// forgetRecords drops tenantID's old records of the ids of tasks just
// enqueued, in one Redis call.
func (e *Enqueuer) forgetRecords(ctx context.Context, tenantID string, taskIDs []string) {
	if e.records == nil || len(taskIDs) == 0 {
		return
	}
	if err := e.records.Forget(ctx, tenantID, taskIDs...); err != nil {
		e.logger.WarnContext(ctx, "forget task records", slog.String("tenant_id", tenantID), slog.Int("tasks", len(taskIDs)), slog.Any("error", err))
	}
}
