package tasks

import (
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/tenantctx"
)

// Queue classes. A payload's Spec names its class; the Enqueuer puts the
// task in the class's queue for its tenant (Layout: with one shard, the
// default, the class is the queue). Do not create a queue per tenant: an
// asynq server polls every queue it serves and its throughput falls with
// each one.
const (
	QueueCritical = "critical"
	QueueDefault  = "default"
	QueueLow      = "low"
)

// QueueWeights are the classes' priorities (6/3/1); Layout.Weights gives
// each shard of a class its class's weight.
var QueueWeights = map[string]int{QueueCritical: 6, QueueDefault: 3, QueueLow: 1}

// Queues lists the queue classes in priority order. With more than one
// shard they are not all the queues: serve, search and hold Layout.Queues.
var Queues = []string{QueueCritical, QueueDefault, QueueLow}

// WorkQueues are the classes of ordinary work (tenantctx.Work): the queues
// in which a suspended tenant's backlog is held (Layout.WorkQueues, every
// shard of them). The lifecycle's tasks (migration, destruction) run in
// QueueCritical, which suspension does not hold, so a suspended tenant is
// still migrated and can be erased.
var WorkQueues = []string{QueueDefault, QueueLow}

// ConflictPolicy says what Enqueue does when a task with the same id already
// exists.
type ConflictPolicy int

const (
	// KeepExisting returns the existing task, whatever its state (one per
	// tick).
	KeepExisting ConflictPolicy = iota
	// ReplaceFinished returns the existing task while it is pending, active,
	// scheduled or waiting to retry, and replaces it with a new one when it
	// has completed or was archived (a new PDF render after the last one
	// finished; a reminder after one that sent nothing).
	ReplaceFinished
	// ReplaceFinishedFollowRunning is ReplaceFinished, except while the
	// existing task is running: it may have read its inputs before the
	// change that asked for the task again, so a follow-up task
	// (FollowUpID, itself ReplaceFinished) is enqueued to run once more,
	// or the one already waiting is returned. The task's handler must
	// serialize runs of the same work, so that the follow-up reads its
	// inputs after the running one is done (a PDF render of an invoice the
	// app edited while the previous render ran).
	ReplaceFinishedFollowRunning
)

// FollowUpID is the id of the follow-up of the task with id taskID
// (ReplaceFinishedFollowRunning).
func FollowUpID(taskID string) string { return taskID + ":again" }

// Spec is what one task needs besides its payload: queue class, id, retries,
// timeout, retention, what to do on an id conflict, and what it does to
// its tenant. A payload's Spec method builds a new one for every task.
type Spec struct {
	// Queue is the task's queue class (QueueCritical, QueueDefault,
	// QueueLow); the Enqueuer replaces it by the tenant's shard of the
	// class (Layout.Queue) before the task is enqueued.
	Queue     string
	TaskID    string
	MaxRetry  int
	Timeout   time.Duration
	Retention time.Duration
	Conflict  ConflictPolicy
	// Activity is what the task does to its tenant, as the status policy
	// (tenantctx.Status.Decide) judges it; the zero value is ordinary
	// work. System tasks have no tenant and ignore it.
	Activity tenantctx.Activity
	// NeedsCatalog says that the task's handler reads or writes the
	// catalog on "main" itself, beyond the tenant look-up that the worker
	// makes before it (and the tenant cache may answer): a tenant task
	// then needs "main" as well as its tenant's database, and the worker
	// holds it while either is found down (worker.DatabaseBreakers).
	// System tasks work on the catalog alone and are held while "main" is
	// down whatever it says.
	NeedsCatalog bool
}

// Options returns s as asynq options.
func (s Spec) Options() []asynq.Option {
	opts := []asynq.Option{asynq.Queue(s.Queue), asynq.MaxRetry(s.MaxRetry), asynq.Timeout(s.Timeout)}
	if s.TaskID != "" {
		opts = append(opts, asynq.TaskID(s.TaskID))
	}
	if s.Retention > 0 {
		opts = append(opts, asynq.Retention(s.Retention))
	}
	return opts
}

// taskID builds a task id from its parts; ids are unique within a queue and
// name their type and tenant so operators can read them in the dashboard.
func taskID(typ string, parts ...any) string {
	b := make([]byte, 0, 64)
	b = append(b, typ...)
	for _, p := range parts {
		b = append(b, ':')
		switch v := p.(type) {
		case string:
			b = append(b, v...)
		case int64:
			b = strconv.AppendInt(b, v, 10)
		default:
			b = fmt.Append(b, v)
		}
	}
	return string(b)
}
