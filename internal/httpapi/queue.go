package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// backlogFull answers when err says a backlog is full; it reports whether
// it answered. Nothing of the request was accepted either way:
//   - the tenant's own backlog (fair.ErrBacklogFull): 429, the tenant's
//     limit;
//   - the queue's backlogs of all tenants together (fair.ErrQueueFull):
//     503, the system's limit, not the tenant's doing.
//
// Both carry Retry-After, the dispatcher's estimate of when room frees up.
// A request that adds more tasks than the cap allows at all (a bulk
// request larger than the tenant's max_waiting, fair.FullError.Never)
// would be refused however long its client waited: 413 without
// Retry-After, naming the cap, so that the client splits it.
func backlogFull(w http.ResponseWriter, err error) bool {
	status, text := http.StatusTooManyRequests, "too many tasks waiting for this tenant; nothing was accepted, retry later"
	retry := time.Second
	var full *fair.FullError
	switch {
	case errors.As(err, &full) && full.Never():
		limit := fmt.Sprintf("this tenant's waiting cap (max_waiting %d)", full.Cap)
		if full.QueueWide {
			limit = fmt.Sprintf("the service's waiting cap (%d)", full.Cap)
		}
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf(
			"this request adds %d tasks, more than %s allows at once; nothing was accepted: send at most %d new invoices per request",
			full.Adding, limit, full.Cap))
		return true
	case errors.As(err, &full) && full.QueueWide:
		status, text = http.StatusServiceUnavailable, "too many tasks waiting in the service; nothing was accepted, retry later"
		retry = full.RetryAfter
	case errors.As(err, &full):
		retry = full.RetryAfter
	case !errors.Is(err, fair.ErrBacklogFull):
		return false
	}
	retry = max(retry, time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(int(retry.Round(time.Second)/time.Second)))
	writeError(w, status, text)
	return true
}

// queueError answers the errors of the tenant queue routes; it reports
// whether it answered. kept says what the route kept when it ran out of
// time (ranOut).
func (h *Handler) queueError(w http.ResponseWriter, r *http.Request, op string, err error, kept string) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, "unknown tenant")
	case errors.Is(err, tenancy.ErrNoDispatch):
		writeError(w, http.StatusConflict, "fair dispatch is off (FAIR_DISPATCH=false): tenants have no backlog")
	case errors.Is(err, tenancy.ErrRefused):
		writeError(w, http.StatusConflict, "tenant is being deleted")
	case errors.Is(err, tenancy.ErrNotReady):
		writeError(w, http.StatusConflict, "tenant is still being provisioned: its queue holds the migration that activates it; pause or drain it once the tenant is active")
	case h.ranOut(w, r, op, err, kept):
	default:
		h.internalError(w, r, op, err)
	}
	return true
}

// tenantQueue is GET /admin/tenants/{id}/queue: the tenant's waiting,
// admitted and running tasks, by queue and type, and the oldest wait.
func (h *Handler) tenantQueue(w http.ResponseWriter, r *http.Request) {
	id, ok := pathTenantID(w, r)
	if !ok {
		return
	}
	q, err := h.opts.Tenancy.Queue(r.Context(), id)
	if h.queueError(w, r, "tenant queue", err, nothingChanged) {
		return
	}
	writeJSON(w, http.StatusOK, q)
}

// defaultQueuesTop is GET /admin/queues's top parameter when absent.
const defaultQueuesTop = 10

// queues is GET /admin/queues?top=K: every queue's backlogs across its
// tenants, with the K tenants with the most waiting tasks (default 10, at
// most 100), and its live workers.
func (h *Handler) queues(w http.ResponseWriter, r *http.Request) {
	q, ok := query(w, r, "top")
	if !ok {
		return
	}
	k := defaultQueuesTop
	if v := q.Get("top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > tenancy.MaxQueuesTop {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("top must be a number from 1 to %d", tenancy.MaxQueuesTop))
			return
		}
		k = n
	}
	qs, err := h.opts.Tenancy.Queues(r.Context(), k)
	if h.queueError(w, r, "queues", err, nothingChanged) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"queues": qs})
}

// pauseQueue is POST /admin/tenants/{id}/queue/pause: 200 {"moved_back": N}.
func (h *Handler) pauseQueue(w http.ResponseWriter, r *http.Request) {
	id, ok := pathTenantID(w, r)
	if !ok {
		return
	}
	moved, err := h.opts.Tenancy.PauseQueue(r.Context(), id, tenancy.ActorAdmin)
	kept := "the pause may still be made without this request (GET /admin/tenants/{id}/queue shows it); retrying is safe"
	if errors.Is(err, tenancy.ErrStillCompleting) {
		kept = fmt.Sprintf("the queue is paused (%d tasks moved back), and recording it goes on without this request", moved)
	}
	if h.queueError(w, r, "pause tenant queue", err, kept) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"paused": true, "moved_back": moved})
}

// resumeQueue is POST /admin/tenants/{id}/queue/resume: 200.
func (h *Handler) resumeQueue(w http.ResponseWriter, r *http.Request) {
	id, ok := pathTenantID(w, r)
	if !ok {
		return
	}
	err := h.opts.Tenancy.ResumeQueue(r.Context(), id, tenancy.ActorAdmin)
	kept := "the pause may still be lifted without this request (GET /admin/tenants/{id}/queue shows it); retrying is safe"
	if errors.Is(err, tenancy.ErrStillCompleting) {
		kept = "the pause is lifted, and recording it goes on without this request"
	}
	if h.queueError(w, r, "resume tenant queue", err, kept) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"paused": false})
}

// drainQueue is POST /admin/tenants/{id}/queue/drain: 200 {"discarded": N,
// "waiting", "admitted", "parked", "retrying", "scheduled"}.
func (h *Handler) drainQueue(w http.ResponseWriter, r *http.Request) {
	id, ok := pathTenantID(w, r)
	if !ok {
		return
	}
	n, err := h.opts.Tenancy.DrainQueue(r.Context(), id, tenancy.ActorAdmin)
	kept := "the drain may go on without this request (for 30 s at most, logging what it discarded); what it did not discard is kept: drain again to discard the rest"
	if errors.Is(err, tenancy.ErrStillCompleting) {
		kept = fmt.Sprintf("the backlog was discarded (%d tasks), and recording it goes on without this request", n.Total())
	}
	if h.queueError(w, r, "drain tenant queue", err, kept) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"discarded": n.Total(), "waiting": n.Waiting, "admitted": n.Admitted, "parked": n.Parked,
		"retrying": n.Retrying, "scheduled": n.Scheduled})
}

// timeZoneRequest is PUT /admin/tenants/{id}/time_zone's body.
type timeZoneRequest struct {
	TimeZone string `json:"time_zone"`
}

// setTimeZone is PUT /admin/tenants/{id}/time_zone: the tenant's time
// zone (an IANA name), in which its invoices' due dates are judged from
// its next overdue sweep or reminder on. 200 with the tenant.
func (h *Handler) setTimeZone(w http.ResponseWriter, r *http.Request) {
	id, ok := pathTenantID(w, r)
	if !ok {
		return
	}
	var req timeZoneRequest
	r, done, ok := h.decodeBody(w, r, &req)
	defer done()
	if !ok {
		return
	}
	if err := checkTimeZone(req.TimeZone); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	t, err := h.opts.Tenancy.SetTimeZone(r.Context(), id, req.TimeZone, tenancy.ActorAdmin)
	switch {
	case errors.Is(err, tenantctx.ErrInvalidTimeZone):
		writeError(w, http.StatusBadRequest, checkTimeZone(req.TimeZone).Error())
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, "unknown tenant")
	case errors.Is(err, tenancy.ErrRefused):
		writeError(w, http.StatusConflict, "tenant is being deleted")
	case h.notPropagated(w, r, "set tenant time zone", err):
	case h.ranOut(w, r, "setting the time zone", err, "the time zone may or may not be saved (GET /admin/tenants/{id} shows it); retrying is safe"):
	case err != nil:
		h.internalError(w, r, "set tenant time zone", err)
	default:
		writeJSON(w, http.StatusOK, t)
	}
}

// limitsRequest is PUT /admin/tenants/{id}/limits's body.
type limitsRequest struct {
	Plan       string `json:"plan"`
	Weight     int    `json:"weight"`
	MaxRunning int    `json:"max_running"`
	MaxWaiting int    `json:"max_waiting"`
}

// limitsAnswer is PUT /admin/tenants/{id}/limits's answer: the tenant
// (its plan and stored overrides) and the policy they give it now.
type limitsAnswer struct {
	tenantctx.Tenant
	Policy fair.Policy `json:"policy"`
}

// setLimits is PUT /admin/tenants/{id}/limits: the tenant's plan (empty
// keeps it) and its overrides of the plan's weight and caps (0: the
// plan's). 200 with the tenant and its effective limits ("policy").
func (h *Handler) setLimits(w http.ResponseWriter, r *http.Request) {
	id, ok := pathTenantID(w, r)
	if !ok {
		return
	}
	var req limitsRequest
	r, done, ok := h.decodeBody(w, r, &req)
	defer done()
	if !ok {
		return
	}
	if err := checkText("plan", req.Plan, maxPlanLen); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	l := tenantctx.Limits{Weight: req.Weight, MaxRunning: req.MaxRunning, MaxWaiting: req.MaxWaiting}
	t, err := h.opts.Tenancy.SetLimits(r.Context(), id, req.Plan, l, tenancy.ActorAdmin)
	switch {
	case errors.Is(err, tenantctx.ErrInvalidLimits):
		writeError(w, http.StatusBadRequest, l.Validate().Error())
	case errors.Is(err, tenancy.ErrUnknownPlan):
		writeError(w, http.StatusBadRequest, planMessage(err))
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, "unknown tenant")
	case errors.Is(err, tenancy.ErrRefused):
		writeError(w, http.StatusConflict, "tenant is being deleted")
	case h.notPropagated(w, r, "set tenant limits", err):
	case errors.Is(err, tenancy.ErrStillCompleting) && h.ranOut(w, r, "setting the limits", err,
		"the limits are saved and propagated, and telling the dispatcher goes on without this request; retrying is safe"):
	case h.ranOut(w, r, "setting the limits", err, "the limits may or may not be saved (GET /admin/tenants/{id} shows them); retrying is safe"):
	case err != nil:
		h.internalError(w, r, "set tenant limits", err)
	default:
		writeJSON(w, http.StatusOK, limitsAnswer{Tenant: t, Policy: h.opts.Tenancy.Policy(t)})
	}
}
