package httpapi

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/invoicing/tenantworker/internal/readiness"
)

// readyTimeout bounds each readiness check.
const readyTimeout = 2 * time.Second

// healthz is GET /healthz: the process serves requests.
func (h *Handler) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyBody answers GET /readyz.
type readyBody struct {
	Status string            `json:"status"`
	Error  string            `json:"error,omitempty"`
	Checks map[string]string `json:"checks"`
}

// readyz is GET /readyz: Redis PING and write check (readiness.Redis) and
// PostgreSQL ping, concurrently, 2 s each; 503 names every failing dependency, but not its error: the route
// is unauthenticated, and errors name hosts, users and databases. The
// errors are logged.
func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	checks := map[string]readiness.Check{}
	if h.opts.Redis != nil {
		checks["redis"] = readiness.Redis(h.opts.Redis)
	}
	if h.pgReady != nil {
		checks["postgres"] = h.pgReady
	}
	body := readyBody{Status: "ok", Checks: map[string]string{}}
	for name := range checks {
		body.Checks[name] = "ok"
	}
	results := readiness.Run(r.Context(), checks, readyTimeout)
	failed := make([]string, 0, len(results))
	for name, err := range results {
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "readiness check failed",
			slog.String("request_id", info(r.Context()).id), slog.String("check", name), slog.Any("error", err))
		body.Checks[name] = "unavailable"
		failed = append(failed, name)
	}
	if len(failed) > 0 {
		body.Status = "unavailable"
		body.Error = "not ready: " + joinSorted(failed)
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	writeJSON(w, http.StatusOK, body)
}
