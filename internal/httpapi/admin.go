package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// digest is the SHA-256 of s; tokens are compared as digests so the
// comparison takes the same time whatever the presented token's length.
func digest(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// adminTokenOK compares token with the admin token in constant time.
func (h *Handler) adminTokenOK(token string) bool {
	d := digest(token)
	return subtle.ConstantTimeCompare(d[:], h.adminHash[:]) == 1
}

// admin guards an admin route: 404 when no admin token is configured
// (disabled); otherwise the admin protections (protectAdmin: anti-framing
// headers, cross-origin writes refused), 429 for a client address that
// failed too often, 401 without the right bearer token (a wrong one counts
// as a failure). The route's work is bounded by
// Options.AdminRequestTimeout (ranOut).
func (h *Handler) admin(next http.Handler) http.Handler {
	return h.guardAdmin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), h.opts.AdminRequestTimeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(withUntimed(ctx, r)))
	}), adminBearer)
}

// nothingChanged is what a read-only admin route that ran out of time kept.
const nothingChanged = "nothing was changed; retrying is safe"

// ranOut answers 503 with Retry-After and reports true when the admin
// request r ran out of its time (Options.AdminRequestTimeout) before its
// work ended with err: whatever failed then failed because the time was
// up (a read cut at the deadline is an I/O timeout, not ctx's error), and
// the operator must learn whether anything was kept. kept says so, in the
// route's terms ("nothing was changed"); the answer is "<op> did not
// complete within <timeout>; <kept>". It returns false when err is nil or
// the request still had time.
func (h *Handler) ranOut(w http.ResponseWriter, r *http.Request, op string, err error, kept string) bool {
	if err == nil || !errors.Is(r.Context().Err(), context.DeadlineExceeded) {
		return false
	}
	ri := info(r.Context())
	h.log.LogAttrs(r.Context(), slog.LevelError, "admin request ran out of time",
		slog.String("request_id", ri.id), slog.String("op", op), slog.String("tenant_id", ri.tenantID),
		slog.Duration("timeout", h.opts.AdminRequestTimeout), slog.Any("error", err))
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("%s did not complete within %v (a dependency did not answer in time); %s",
		op, h.opts.AdminRequestTimeout, kept))
	return true
}

// dashboardAuth guards the dashboard like admin, but also accepts HTTP
// Basic authentication (any user name, the admin token as password) and
// asks for it, so that a browser prompts. Because a browser then attaches
// those credentials to every request, also to one another site makes it
// send, protectAdmin's cross-origin check matters most here.
func (h *Handler) dashboardAuth(next http.Handler) http.Handler {
	return h.guardAdmin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, DashboardPath+"/api/") {
			// The dashboard's JSON answers hold tenants' task payloads and
			// results: like every JSON answer, not stored nor sniffed.
			hdr := w.Header()
			hdr.Set("Cache-Control", "no-store")
			hdr.Set("X-Content-Type-Options", "nosniff")
		}
		next.ServeHTTP(w, r)
	}), adminBasic)
}

// adminChallenge is how an admin guard asks for the token: the schemes it
// accepts, and its 401's WWW-Authenticate header and message.
type adminChallenge struct {
	basic           bool // HTTP Basic, the token as password, besides a bearer token
	header, message string
}

var (
	adminBearer = adminChallenge{header: `Bearer realm="admin"`, message: "admin token required"}
	adminBasic  = adminChallenge{basic: true, header: `Basic realm="asynq", charset="UTF-8"`, message: "admin credentials required"}
)

// guardAdmin is admin and dashboardAuth, by their challenge.
func (h *Handler) guardAdmin(next http.Handler, c adminChallenge) http.Handler {
	return h.protectAdmin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.opts.AdminToken == "" {
			writeError(w, http.StatusNotFound, "not found")
			return
		}
		addr := h.clientAddr(r)
		if refuseIfLimited(w, h.adminFails, addr) {
			return
		}
		token, ok := bearerToken(r)
		if !ok && c.basic {
			_, token, ok = r.BasicAuth()
		}
		release, admitted := startAuth(w, r, h.adminFails, addr)
		if !admitted {
			return
		}
		good := ok && h.adminTokenOK(token)
		if !good && ok {
			h.adminFails.fail(addr)
		}
		release()
		if !good {
			w.Header().Set("WWW-Authenticate", c.header)
			writeError(w, http.StatusUnauthorized, c.message)
			return
		}
		next.ServeHTTP(w, r)
	}))
}

// notPropagated answers 503 with Retry-After when err says a change was
// saved but its cache invalidation did not reach the other replicas
// (storage.ErrInvalidationFailed): they may still accept a revoked key or a
// suspended tenant, so the operator must not be told it worked. Retrying
// the call is safe and propagates again. An invalidation still under way
// at the request's deadline (storage.ErrInvalidationPending) is the
// out-of-time answer (ranOut): saved, still completing without the
// request. It returns false for other errors.
func (h *Handler) notPropagated(w http.ResponseWriter, r *http.Request, op string, err error) bool {
	if !errors.Is(err, storage.ErrInvalidationFailed) {
		return false
	}
	if errors.Is(err, storage.ErrInvalidationPending) && h.ranOut(w, r, op, err,
		"the change is saved, and propagating it to every replica (and what completes it) goes on without this request; retrying is safe") {
		return true
	}
	h.log.LogAttrs(r.Context(), slog.LevelError, "admin change not propagated to every replica",
		slog.String("request_id", info(r.Context()).id), slog.String("op", op),
		slog.String("tenant_id", info(r.Context()).tenantID), slog.Any("error", err))
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, "the change is saved but could not be propagated to every replica; retry the request")
	return true
}

// Bounds of the free-text tenant fields.
const (
	maxNameLen = tenantctx.MaxNameLen
	maxPlanLen = tenantctx.MaxPlanLen
)

// createTenantRequest is POST /admin/tenants's body.
type createTenantRequest struct {
	Slug string `json:"slug"`
	Name string `json:"name"`
	Plan string `json:"plan"`
	// Database places the tenant on a registered tenant database; empty
	// means the least loaded one.
	Database string `json:"database"`
	// TimeZone is the IANA name of the tenant's time zone, in which its
	// invoices' due dates are judged; absent means UTC, "" is refused.
	TimeZone *string `json:"time_zone"`
}

// createTenantBody answers POST /admin/tenants.
type createTenantBody struct {
	ID       string           `json:"id"`
	Slug     string           `json:"slug"`
	Status   tenantctx.Status `json:"status"`
	APIKey   string           `json:"api_key"`
	TaskID   string           `json:"task_id"`
	Database string           `json:"database"`
	TimeZone string           `json:"time_zone"`
}

// checkText validates a free-text field (tenantctx.ValidateText) and
// returns the error without its sentinel's prefix, for a 400 message.
func checkText(field, v string, max int) error {
	if err := tenantctx.ValidateText(field, v, max); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), tenantctx.ErrInvalidText.Error()+": "))
	}
	return nil
}

// checkTimeZone validates a tenant's time zone (tenantctx.ValidateTimeZone)
// for a 400 message naming the field.
func checkTimeZone(zone string) error {
	if err := tenantctx.ValidateTimeZone(zone); err != nil {
		return fmt.Errorf("time_zone: %w", err)
	}
	return nil
}

// createTenant is POST /admin/tenants.
func (h *Handler) createTenant(w http.ResponseWriter, r *http.Request) {
	var req createTenantRequest
	r, done, ok := h.decodeBody(w, r, &req)
	defer done()
	if !ok {
		return
	}
	if req.Slug == "" {
		writeError(w, http.StatusBadRequest, "slug is required")
		return
	}
	zone := tenantctx.DefaultTimeZone
	if req.TimeZone != nil {
		zone = *req.TimeZone
	}
	for _, err := range []error{checkText("name", req.Name, maxNameLen), checkText("plan", req.Plan, maxPlanLen), checkTimeZone(zone)} {
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	res, err := h.opts.Tenancy.Provision(r.Context(), tenancy.NewTenant{Slug: req.Slug, Name: req.Name, Plan: req.Plan, Database: req.Database, TimeZone: zone}, tenancy.ActorAdmin)
	switch status := provisionStatus(err); {
	case err == nil:
	case errors.Is(err, tenantctx.ErrInvalidTimeZone):
		writeError(w, http.StatusBadRequest, checkTimeZone(zone).Error())
		return
	case errors.Is(err, tenantctx.ErrInvalidDatabase), errors.Is(err, placement.ErrUnknownDatabase):
		writeError(w, http.StatusBadRequest, fmt.Sprintf("database %.70q is not a tenant database this service can reach: not registered, or registered without a URL here (see enqueue db list)", req.Database))
		return
	case errors.Is(err, placement.ErrMayNotCreateSchemas), errors.Is(err, placement.ErrRefused):
		// Named, and found unusable by its check (placement.Registry.Choose):
		// a misconfiguration of that database, which no retry fixes. The
		// check's errors never quote its URL.
		writeError(w, http.StatusBadRequest, fmt.Sprintf("database %.70q takes no new tenant until it passes its check again (see enqueue db list): %s", req.Database, err))
		return
	case status == http.StatusBadRequest:
		writeError(w, status, slugMessage(err))
		return
	case errors.Is(err, tenancy.ErrBeingDeleted):
		writeError(w, http.StatusConflict, fmt.Sprintf("tenant %q is being deleted; provision it again once its deletion completed", req.Slug))
		return
	case status == http.StatusConflict:
		writeError(w, status, fmt.Sprintf("slug %q is taken", req.Slug))
		return
	case errors.Is(err, tenancy.ErrUnknownPlan):
		writeError(w, http.StatusBadRequest, planMessage(err))
		return
	case backlogFull(w, err):
		// Its migration could not be queued; nothing was kept (Provision).
		return
	case h.ranOut(w, r, "provisioning", err, provisionKept(req.Slug, err)):
		return
	default:
		h.internalError(w, r, "provision tenant", err)
		return
	}
	info(r.Context()).tenantID = res.Tenant.ID
	writeJSON(w, http.StatusAccepted, createTenantBody{
		ID: res.Tenant.ID, Slug: res.Tenant.Slug, Status: res.Tenant.Status,
		APIKey: res.APIKey, TaskID: res.MigrateTaskID, Database: res.Tenant.DatabaseName(), TimeZone: res.Tenant.TimeZoneName(),
	})
}

// provisionKept says what a provisioning of slug that ran out of time
// with err kept: nothing (Provision deleted what it had created), a tenant
// still being deleted without the request (its clean-up had not ended by
// the deadline), or, when that clean-up failed, a tenant left in
// provisioning.
func provisionKept(slug string, err error) string {
	if errors.Is(err, tenancy.ErrStillCompleting) {
		return fmt.Sprintf("the tenant %.70q was created and is being deleted again without this request; "+
			"provision it again once GET /admin/tenants?status=provisioning no longer lists it (should it stay there, DELETE /admin/tenants/{id} removes it)", slug)
	}
	if errors.Is(err, tenancy.ErrLeftInProvisioning) {
		return "the tenant was created but could not be removed again: it is left in provisioning, without its migration " +
			"(GET /admin/tenants?status=provisioning lists it; DELETE /admin/tenants/{id} removes it, POST /admin/migrations finishes it)"
	}
	return "nothing was kept; retrying is safe"
}

// provisionStatus maps Provision's errors to HTTP statuses.
func provisionStatus(err error) int {
	switch {
	case errors.Is(err, tenantctx.ErrInvalidSlug), errors.Is(err, tenantctx.ErrReservedSlug):
		return http.StatusBadRequest
	case errors.Is(err, storage.ErrConflict):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// planMessage is the 400 message of tenancy.ErrUnknownPlan: the plan and
// the known ones, without the operation's prefix.
func planMessage(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, tenancy.ErrUnknownPlan.Error()); i >= 0 {
		return msg[i:]
	}
	return tenancy.ErrUnknownPlan.Error()
}

// slugMessage is the 400 message of an invalid or reserved slug: the
// validation's reason without Provision's operation prefix.
func slugMessage(err error) string {
	return strings.TrimPrefix(err.Error(), "provision tenant: ")
}

// listTenantsBody answers GET /admin/tenants.
type listTenantsBody struct {
	Tenants   []tenantctx.Tenant `json:"tenants"`
	NextAfter string             `json:"next_after"`
}

// query parses r's query string, answering 400 and returning false when
// it cannot be read (a bad %-escape, a ';' separator), names a parameter
// twice, or names one the route does not take (not among params): r.URL.Query
// drops such a pair without a word, of two values it reads the first, and
// the route ignores a name it does not know, so "?status=suspended;" or a
// mistyped "?state=suspended" would list every tenant as if no filter had
// been asked for.
func query(w http.ResponseWriter, r *http.Request, params ...string) (url.Values, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid query string")
		return nil, false
	}
	for name, vs := range q {
		if !slices.Contains(params, name) {
			takes := "none"
			if len(params) > 0 {
				takes = strings.Join(params, ", ")
			}
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown query parameter %.60q (this route takes %s)", name, takes))
			return nil, false
		}
		if len(vs) > 1 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("query parameter %.60q given twice", name))
			return nil, false
		}
	}
	return q, true
}

// noQuery refuses, with query's 400, a request whose query string is not
// empty, before next runs: the routes that change something take no
// parameter, and one ignored would do what was not asked for
// ("POST .../queue/drain?type=invoice:pdf" would discard the whole
// backlog, "DELETE /admin/tenants/{id}?dry_run=1" delete the tenant).
func noQuery(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := query(w, r); ok {
			next.ServeHTTP(w, r)
		}
	})
}

// listTenants is GET /admin/tenants?status=&after=&limit=.
func (h *Handler) listTenants(w http.ResponseWriter, r *http.Request) {
	q, ok := query(w, r, "status", "after", "limit")
	if !ok {
		return
	}
	var opts storage.ListOptions
	if s := q.Get("status"); s != "" {
		st, err := tenantctx.ParseStatus(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		opts.Status = st
	}
	if a := q.Get("after"); a != "" {
		if err := tenantctx.ValidateID(a); err != nil {
			writeError(w, http.StatusBadRequest, "after: "+err.Error())
			return
		}
		opts.After = a
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > storage.MaxPageSize {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be 1..%d", storage.MaxPageSize))
			return
		}
		opts.Limit = n
	}
	page, err := h.opts.Catalog.ListTenants(r.Context(), opts)
	if h.ranOut(w, r, "listing tenants", err, nothingChanged) {
		return
	}
	if err != nil {
		h.internalError(w, r, "list tenants", err)
		return
	}
	body := listTenantsBody{Tenants: page}
	if body.Tenants == nil {
		body.Tenants = []tenantctx.Tenant{}
	}
	if len(page) == opts.PageLimit() {
		body.NextAfter = page[len(page)-1].ID
	}
	writeJSON(w, http.StatusOK, body)
}

// pathID returns the {id} path value, answering 404 when it cannot be a
// tenant id.
func pathID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if tenantctx.ValidateID(id) != nil {
		writeError(w, http.StatusNotFound, "unknown tenant")
		return "", false
	}
	return id, true
}

// pathTenantID is pathID for a handler that acts on the tenant by its id,
// which then names the tenant in the request's access log line
// (tenant_id), whether the tenant exists or not.
func pathTenantID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id, ok := pathID(w, r)
	if ok {
		info(r.Context()).tenantID = id
	}
	return id, ok
}

// pathTenant loads the tenant named by the {id} path value, answering 404
// when it does not exist (or the id cannot be one).
func (h *Handler) pathTenant(w http.ResponseWriter, r *http.Request) (tenantctx.Tenant, bool) {
	id, ok := pathID(w, r)
	if !ok {
		return tenantctx.Tenant{}, false
	}
	t, err := h.opts.Catalog.TenantByID(r.Context(), id)
	if errors.Is(err, storage.ErrNotFound) {
		writeError(w, http.StatusNotFound, "unknown tenant")
		return tenantctx.Tenant{}, false
	}
	if h.ranOut(w, r, "loading the tenant", err, nothingChanged) {
		return tenantctx.Tenant{}, false
	}
	if err != nil {
		h.internalError(w, r, "load tenant", err)
		return tenantctx.Tenant{}, false
	}
	info(r.Context()).tenantID = t.ID
	return t, true
}

// getTenant is GET /admin/tenants/{id}.
func (h *Handler) getTenant(w http.ResponseWriter, r *http.Request) {
	if t, ok := h.pathTenant(w, r); ok {
		writeJSON(w, http.StatusOK, t)
	}
}

// suspendTenant is POST /admin/tenants/{id}/suspend: active -> suspended
// (suspended again is a no-op); any other status is 409.
func (h *Handler) suspendTenant(w http.ResponseWriter, r *http.Request) {
	h.changeStatus(w, r, tenantctx.StatusSuspended, h.opts.Tenancy.Suspend)
}

// resumeTenant is POST /admin/tenants/{id}/resume: suspended -> active
// (active again is a no-op). A provisioning tenant cannot be resumed: it
// becomes active only when its migrations succeed.
func (h *Handler) resumeTenant(w http.ResponseWriter, r *http.Request) {
	h.changeStatus(w, r, tenantctx.StatusActive, h.opts.Tenancy.Resume)
}

// changeStatus answers a status change made by change.
func (h *Handler) changeStatus(w http.ResponseWriter, r *http.Request, to tenantctx.Status,
	change func(ctx context.Context, id, actor string) (tenantctx.Tenant, error)) {
	id, ok := pathTenantID(w, r)
	if !ok {
		return
	}
	t, err := change(r.Context(), id, tenancy.ActorAdmin)
	switch {
	case h.notPropagated(w, r, "set tenant status", err):
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, "unknown tenant")
	case errors.Is(err, storage.ErrInvalidTransition):
		writeError(w, http.StatusConflict, fmt.Sprintf("cannot move tenant from %s to %s", t.Status, to))
	case errors.Is(err, tenancy.ErrStillCompleting) && h.ranOut(w, r, "the status change", err,
		fmt.Sprintf("the tenant is %s (saved and propagated), and the hold or release of its backlog goes on without this request; retrying is safe", to)):
	case h.ranOut(w, r, "the status change", err, "the status may or may not have changed (GET /admin/tenants/{id} shows it); retrying is safe"):
	case err != nil:
		h.internalError(w, r, "set tenant status", err)
	default:
		writeJSON(w, http.StatusOK, t)
	}
}

// deleteTenantBody answers DELETE /admin/tenants/{id}.
type deleteTenantBody struct {
	ID     string           `json:"id"`
	Slug   string           `json:"slug"`
	Status tenantctx.Status `json:"status"`
	TaskID string           `json:"task_id"`
}

// deleteTenant is DELETE /admin/tenants/{id}: the tenant moves to deleting
// at once (its routes answer 404 from then on), the request is audited,
// and tenant:destroy erases schema, documents and catalog row and audits
// the completion. Deleting a tenant already being deleted enqueues the
// destroy again (one per tenant), which is how a destroy a waiting cap
// refused (503, Handler.deletionRefused) is queued once there is room.
func (h *Handler) deleteTenant(w http.ResponseWriter, r *http.Request) {
	id, ok := pathTenantID(w, r)
	if !ok {
		return
	}
	d, err := h.opts.Tenancy.RequestDeletion(r.Context(), id, tenancy.ActorAdmin)
	switch {
	case h.notPropagated(w, r, "request tenant deletion", err):
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, "unknown tenant")
	case errors.Is(err, storage.ErrInvalidTransition):
		writeError(w, http.StatusConflict, "tenant cannot be deleted now")
	case h.deletionRefused(w, r, err):
	case errors.Is(err, tenancy.ErrStillCompleting) && h.ranOut(w, r, "the deletion request", err,
		fmt.Sprintf("the tenant is marked deleting (its routes answer 404), and discarding its backlog and enqueuing its destroy (task %s) go on without this request; retrying is safe", d.TaskID)):
	case h.ranOut(w, r, "the deletion request", err, "the tenant may or may not be marked deleting (GET /admin/tenants/{id} shows it); retrying is safe"):
	case err != nil:
		h.internalError(w, r, "request tenant deletion", err)
	default:
		writeJSON(w, http.StatusAccepted, deleteTenantBody{ID: d.Tenant.ID, Slug: d.Tenant.Slug, Status: d.Tenant.Status, TaskID: d.TaskID})
	}
}

// deletionRefused answers 503 with Retry-After and reports true when err
// says the tenant's tenant:destroy could not be queued because a waiting
// cap is reached (capReached): RequestDeletion marked the tenant deleting
// and discarded its backlog, and the request made again once there is
// room queues the destroy. It returns false for other errors.
func (h *Handler) deletionRefused(w http.ResponseWriter, r *http.Request, err error) bool {
	limit, ok := h.capReached(w, r, "request tenant deletion", err)
	if !ok {
		return false
	}
	writeError(w, http.StatusServiceUnavailable, fmt.Sprintf(
		"the tenant is marked deleting (its routes answer 404), but its destroy could not be queued: %s is reached; retry the request later to queue it",
		limit))
	return true
}

// migrateAll is POST /admin/migrations: 202 {"enqueued": N}. A walk
// stopped by a waiting cap (migrationsRefused) or the deadline (ranOut)
// answers 503 with Retry-After and how many were enqueued.
func (h *Handler) migrateAll(w http.ResponseWriter, r *http.Request) {
	enq, err := h.opts.Tenancy.MigrateAll(r.Context())
	if h.ranOut(w, r, "enqueuing the migrations", err, fmt.Sprintf(
		"the migrations of %d tenants were enqueued, the others not yet; retrying is safe (a tenant's migration task is never queued twice)", len(enq))) {
		return
	}
	if h.migrationsRefused(w, r, len(enq), err) {
		return
	}
	if err != nil {
		h.internalError(w, r, fmt.Sprintf("migrate all (%d enqueued)", len(enq)), err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]int{"enqueued": len(enq)})
}

// migrationsRefused answers 503 with Retry-After and reports true when
// err says tenants' migrations could not be queued because a waiting cap
// is reached (capReached; tenancy.MigrationsRefusedError). MigrateAll went
// on past them: the others are queued, and a retry once there is room
// enqueues the rest (a tenant's migration task is never queued twice). It
// returns false for other errors.
func (h *Handler) migrationsRefused(w http.ResponseWriter, r *http.Request, enqueued int, err error) bool {
	limit, ok := h.capReached(w, r, fmt.Sprintf("migrate all (%d enqueued)", enqueued), err)
	if !ok {
		return false
	}
	refused := 1
	if re := (*tenancy.MigrationsRefusedError)(nil); errors.As(err, &re) {
		refused = re.Refused
	}
	writeError(w, http.StatusServiceUnavailable, fmt.Sprintf(
		"the migrations of %d tenants were enqueued, %d refused: %s is reached; retry later (a tenant's migration task is never queued twice, so a retry enqueues the rest)",
		enqueued, refused, limit))
	return true
}

// capReached reports whether err says an admin route's enqueue (op) was
// refused by a waiting cap (fair.FullError: a queue's backlogs of all
// tenants at FAIR_MAX_WAITING_TOTAL, or a tenant's own backlog at its
// max_waiting), and if so logs it, sets Retry-After, the dispatcher's
// estimate of when room frees up (at least a second), and returns the cap
// in words for the answer.
func (h *Handler) capReached(w http.ResponseWriter, r *http.Request, op string, err error) (limit string, ok bool) {
	var full *fair.FullError
	if !errors.As(err, &full) {
		return "", false
	}
	ri := info(r.Context())
	h.log.LogAttrs(r.Context(), slog.LevelWarn, "admin enqueue refused by a waiting cap",
		slog.String("request_id", ri.id), slog.String("op", op), slog.String("tenant_id", ri.tenantID), slog.Any("error", err))
	limit = fmt.Sprintf("a tenant's waiting cap (max_waiting %d)", full.Cap)
	if full.QueueWide {
		limit = fmt.Sprintf("the waiting cap of queue %s (FAIR_MAX_WAITING_TOTAL %d)", full.Queue, full.Cap)
	}
	retry := max(full.RetryAfter, time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(int(retry.Round(time.Second)/time.Second)))
	return limit, true
}
