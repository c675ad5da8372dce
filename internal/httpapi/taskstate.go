package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// taskBody answers GET /v1/tasks/{task_id}.
type taskBody struct {
	TaskID  string `json:"task_id"`
	Type    string `json:"type"`
	State   string `json:"state"`
	Retried int    `json:"retried"`
	// LastError is a stable, safe reason (publicLastError), never the
	// task's error message.
	LastError string `json:"last_error"`
	// Result is the task's result: raw JSON when it is JSON, a string
	// otherwise, null when there is none.
	Result any `json:"result"`
}

// What a tenant is shown of a task's last error, besides the reasons the
// worker records for archived tasks (worker.PublicReason).
const (
	// reasonRetrying: the last attempt failed and the task will run again.
	reasonRetrying = "temporary failure, will be retried"
	// reasonFailed: archived, with no record of why (written before
	// records existed, or the record could not be read).
	reasonFailed = "failed"
	// reasonArchivedByOperator: archived before any attempt failed, which
	// only an operator does (asynq's inspector, the dashboard's "archive"
	// of a pending or scheduled task): asynq records no error then.
	reasonArchivedByOperator = "archived by an operator"
)

// taskState is GET /v1/tasks/{task_id}: only the tenant's own tasks; every
// other id, existing or not, is 404. A task asynq no longer has is found
// in the tenant's own records of archived tasks (tasks.TaskRecords). The
// look-up may wait (tasks.Enqueuer.TenantTask: for a slot among the
// look-ups running, for Redis, up to Options.RequestTimeout), so the
// request's credentials are checked again before it answers
// (stillAuthorized).
func (h *Handler) taskState(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	t := tenantctx.MustFromContext(ctx)
	ti, err := h.opts.Enqueuer.TenantTask(ctx, t.ID, r.PathValue("task_id"))
	if errors.Is(err, tasks.ErrTaskNotFound) {
		// The look-up waited too: credentials changed meanwhile learn
		// no more that the tenant has no such task than its state.
		if h.stillAuthorized(w, r) {
			writeError(w, http.StatusNotFound, "task not found")
		}
		return
	}
	if err != nil {
		h.internalError(w, r, "tenant task", err)
		return
	}
	lastError, err := h.publicLastError(ctx, t.ID, ti)
	if err != nil {
		h.internalError(w, r, "tenant task record", err)
		return
	}
	// The look-ups waited (for a slot, for Redis): a key revoked, or a
	// tenant suspended or deleted, meanwhile gets no answer about its
	// tasks once the change has answered.
	if !h.stillAuthorized(w, r) {
		return
	}
	body := taskBody{
		TaskID: ti.ID, Type: ti.Type, State: ti.State.String(),
		Retried: ti.Retried, LastError: lastError,
	}
	switch {
	case len(ti.Result) == 0:
	case json.Valid(ti.Result):
		body.Result = json.RawMessage(ti.Result)
	default:
		body.Result = string(ti.Result)
	}
	writeJSON(w, http.StatusOK, body)
}

// publicLastError is what the tenant sees of ti's last error: nothing when
// there is none or the task completed; for an archived task, the reason the
// worker recorded, or that an operator archived it when no attempt failed;
// otherwise that it will be retried. The error itself
// (which may hold SQL errors, file paths, the mail server's user and host)
// stays in the logs and the dashboard.
func (h *Handler) publicLastError(ctx context.Context, tenantID string, ti *asynq.TaskInfo) (string, error) {
	switch {
	case ti.State == asynq.TaskStateArchived && ti.LastErr == "" && ti.LastFailedAt.IsZero():
		// A record of the tenant's (an archive asynq no longer keeps)
		// has its time as LastFailedAt: only asynq's own copy gets here.
		return reasonArchivedByOperator, nil
	case ti.LastErr == "", ti.State == asynq.TaskStateCompleted:
		return "", nil
	case ti.State != asynq.TaskStateArchived:
		return reasonRetrying, nil
	case h.opts.TaskRecords == nil:
		return reasonFailed, nil
	}
	// Get ends at ctx's deadline (REQUEST_TIMEOUT) like the task look-up
	// itself, also while the Redis of the records does not answer: then
	// the request fails (503), rather than saying "failed".
	rec, err := h.opts.TaskRecords.Get(ctx, tenantID, ti.ID)
	if err != nil && ctx.Err() != nil {
		return "", err
	}
	if err != nil || rec.Reason == "" {
		return reasonFailed, nil
	}
	return rec.Reason, nil
}
