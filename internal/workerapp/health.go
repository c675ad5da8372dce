package workerapp

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/invoicing/tenantworker/internal/readiness"
)

// readyTimeout bounds each dependency ping of /readyz.
const readyTimeout = 2 * time.Second

// healthTimeouts bound how long the health server gives a client: to send
// its headers and its whole request, to read the answer, and to send the
// next request on a kept-alive connection. Without them a client that
// connects and stalls, or keeps idle connections open, holds a goroutine
// and a file descriptor each, for ever.
type healthTimeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
}

// defaultHealthTimeouts are the health server's: probes and scrapes are
// small requests, and /metrics answers in well under a second.
var defaultHealthTimeouts = healthTimeouts{
	ReadHeader: 5 * time.Second,
	Read:       10 * time.Second,
	Write:      30 * time.Second,
	Idle:       60 * time.Second,
}

// newHealthServer returns the health server over h with timeouts to.
func newHealthServer(h http.Handler, to healthTimeouts, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: to.ReadHeader,
		ReadTimeout:       to.Read,
		WriteTimeout:      to.Write,
		IdleTimeout:       to.Idle,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelError),
	}
}

// newHealthHandler serves /healthz (200 while the process runs), /readyz
// (Redis reachable and taking writes, PostgreSQL reachable, and not
// shutting down; otherwise 503 with JSON naming what failed) and
// /metrics.
func newHealthHandler(d *deps, draining *atomic.Bool, logger *slog.Logger) http.Handler {
	checks := map[string]readiness.Check{
		"redis":    readiness.Redis(d.Redis),
		"postgres": readiness.Postgres(d.Pool),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /readyz", readyHandler(checks, draining, logger))
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.registry, promhttp.HandlerOpts{}))
	return mux
}

// readyHandler runs checks concurrently, each bounded by readyTimeout, and
// answers 200, or 503 naming what failed ("worker" while shutting down).
// A check's error goes to the log (readiness check failed), never into the
// answer: it may hold an address, a user or a database name, and /readyz
// answers anyone who reaches the port.
func readyHandler(checks map[string]readiness.Check, draining *atomic.Bool, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		failed := map[string]string{}
		if draining.Load() {
			failed["worker"] = "shutting down"
		}
		for name, err := range readiness.Run(r.Context(), checks, readyTimeout) {
			logger.LogAttrs(r.Context(), slog.LevelWarn, "readiness check failed",
				slog.String("check", name), slog.String("error", err.Error()))
			failed[name] = "unavailable"
		}
		if len(failed) > 0 {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "failed": failed})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
