package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// taskBody answers GET /v1/tasks/{task_id}.
type taskBody struct {
	TaskID    string `json:"task_id"`
	Type      string `json:"type"`
	State     string `json:"state"`
	Retried   int    `json:"retried"`
	LastError string `json:"last_error"`
	// Result is the task's result: raw JSON when it is JSON, a string
	// otherwise, null when there is none.
	Result any `json:"result"`
}

// taskState is GET /v1/tasks/{task_id}: only the tenant's own tasks; every
// other id, existing or not, is 404.
func (h *Handler) taskState(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	t := tenantctx.MustFromContext(ctx)
	ti, err := h.opts.Enqueuer.TenantTask(ctx, t.ID, r.PathValue("task_id"))
	if errors.Is(err, tasks.ErrTaskNotFound) {
		writeError(w, http.StatusNotFound, "task not found")
		return
	}
	if err != nil {
		h.internalError(w, r, "tenant task", err)
		return
	}
	body := taskBody{
		TaskID: ti.ID, Type: ti.Type, State: ti.State.String(),
		Retried: ti.Retried, LastError: ti.LastErr,
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
