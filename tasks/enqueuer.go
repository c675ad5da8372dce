package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/hibiken/asynq"
)

// maxTaskIDLen bounds task ids accepted from callers (they come from URLs).
const maxTaskIDLen = 256

// enqueueAttempts bounds the enqueue/inspect/delete loop of Enqueue when
// another producer races on the same task id.
const enqueueAttempts = 4

// Enqueuer is the one place producers enqueue tasks: the HTTP API, the
// scheduler, the sweep fan-out and the CLI. Per-tenant admission (fair
// dispatch, peer failure mode P13 in docs/architecture.md) will live here.
// It is safe for concurrent use.
type Enqueuer struct {
	client    *asynq.Client
	inspector *asynq.Inspector
	logger    *slog.Logger
	records   *TaskRecords // nil: no per-tenant archive records (records.go)
}

// EnqueueResult is the task an Enqueue call stands for.
type EnqueueResult struct {
	// Info describes the task: the new one, or the existing one that made
	// the enqueue a no-op.
	Info *asynq.TaskInfo
	// Existing is true when a task with the same id already existed and
	// was returned instead of enqueueing a new one (dedupe).
	Existing bool
}

// NewEnqueuer returns an Enqueuer over client and inspector, which must use
// the same Redis. A nil logger means slog.Default(). The caller closes
// client and inspector.
func NewEnqueuer(client *asynq.Client, inspector *asynq.Inspector, logger *slog.Logger) *Enqueuer {
	if logger == nil {
		logger = slog.Default()
	}
	return &Enqueuer{client: client, inspector: inspector, logger: logger}
}

// Enqueue validates p (Validate), encodes it and enqueues it with p.Spec(),
// built fresh for this call (never a shared options value: P4 in
// docs/architecture.md).
//
// When a task with the same id exists, the spec's ConflictPolicy decides:
// KeepExisting returns the existing task (Existing is true);
// ReplaceFinished returns it while it is pending, active, scheduled or
// retrying, and deletes and replaces it once it completed or was archived.
// Races with other producers on the same id are retried a few times.
func (e *Enqueuer) Enqueue(ctx context.Context, p Payload) (EnqueueResult, error) {
	if err := Validate(p); err != nil {
		return EnqueueResult{}, err
	}
	data, err := json.Marshal(p)
	if err != nil {
		return EnqueueResult{}, fmt.Errorf("encode %s payload: %w", p.TypeName(), err)
	}
	spec := p.Spec()
	for range enqueueAttempts {
		info, err := e.client.EnqueueContext(ctx, asynq.NewTask(p.TypeName(), data, spec.Options()...))
		if err == nil {
			e.forgetRecord(ctx, p, info.ID) // task records hook (records.go)
			return EnqueueResult{Info: info}, nil
		}
		if !errors.Is(err, asynq.ErrTaskIDConflict) || spec.TaskID == "" {
			return EnqueueResult{}, fmt.Errorf("enqueue %s %s: %w", p.TypeName(), spec.TaskID, err)
		}
		existing, err := e.inspector.GetTaskInfo(spec.Queue, spec.TaskID)
		if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
			continue // it went away between the conflict and the look-up
		}
		if err != nil {
			return EnqueueResult{}, fmt.Errorf("inspect existing task %s: %w", spec.TaskID, err)
		}
		if spec.Conflict == KeepExisting || !finished(existing.State) {
			return EnqueueResult{Info: existing, Existing: true}, nil
		}
		err = e.inspector.DeleteTask(spec.Queue, spec.TaskID)
		if err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			return EnqueueResult{}, fmt.Errorf("replace finished task %s: %w", spec.TaskID, err)
		}
		e.logger.DebugContext(ctx, "replacing finished task",
			slog.String("task_id", spec.TaskID), slog.String("task_type", p.TypeName()),
			slog.String("previous_state", existing.State.String()))
	}
	return EnqueueResult{}, fmt.Errorf("enqueue %s %s: task id still conflicting after %d attempts", p.TypeName(), spec.TaskID, enqueueAttempts)
}

// finished reports whether a task in state s is done for good.
func finished(s asynq.TaskState) bool {
	return s == asynq.TaskStateCompleted || s == asynq.TaskStateArchived
}

// TenantTask returns the task with id taskID if it belongs to tenantID. It
// looks in every queue and returns ErrTaskNotFound when the task does not
// exist or its payload names another tenant (or none): a tenant never
// learns whether another tenant's task id exists. A task asynq no longer
// has but the tenant's TaskRecords keep (WithTaskRecords) is returned as
// archived, from its record.
func (e *Enqueuer) TenantTask(ctx context.Context, tenantID, taskID string) (*asynq.TaskInfo, error) {
	if tenantID == "" || taskID == "" || len(taskID) > maxTaskIDLen {
		return nil, ErrTaskNotFound
	}
	for _, q := range Queues {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		info, err := e.inspector.GetTaskInfo(q, taskID)
		if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("look up task %.64q in queue %s: %w", taskID, q, err)
		}
		if owner, err := OwnerOf(info.Payload); err != nil || owner != tenantID {
			return nil, ErrTaskNotFound
		}
		return info, nil
	}
	return e.archivedRecord(ctx, tenantID, taskID) // task records hook (records.go)
}
