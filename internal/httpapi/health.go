package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"
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

// readyz is GET /readyz: Redis PING and PostgreSQL ping, concurrently, 2 s
// each; 503 names every failing dependency, but not its error: the route
// is unauthenticated, and errors name hosts, users and databases. The
// errors are logged.
func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	checks := map[string]func(context.Context) error{}
	if h.opts.Redis != nil {
		checks["redis"] = func(ctx context.Context) error { return h.opts.Redis.Ping(ctx).Err() }
	}
	if h.opts.Pool != nil {
		checks["postgres"] = h.opts.Pool.Ping
	}
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		body   = readyBody{Status: "ok", Checks: map[string]string{}}
		failed []string
	)
	for name, check := range checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- check(ctx) }()
			var err error
			select {
			case err = <-done:
			case <-ctx.Done():
				// go-redis without ContextTimeoutEnabled waits its
				// ReadTimeout (and retries) past the deadline.
				err = fmt.Errorf("no answer within %v: %w", readyTimeout, ctx.Err())
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				h.log.LogAttrs(r.Context(), slog.LevelWarn, "readiness check failed",
					slog.String("request_id", info(r.Context()).id), slog.String("check", name), slog.Any("error", err))
				body.Checks[name] = "unavailable"
				failed = append(failed, name)
				return
			}
			body.Checks[name] = "ok"
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		body.Status = "unavailable"
		body.Error = "not ready: " + joinSorted(failed)
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	writeJSON(w, http.StatusOK, body)
}
