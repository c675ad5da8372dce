package workerapp

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
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
// (Redis and PostgreSQL reachable, and not shutting down; otherwise 503
// with JSON naming what failed) and /metrics.
func newHealthHandler(d *deps, draining *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		failed := checkReady(r.Context(), d, draining)
		if len(failed) > 0 {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "failed": failed})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.registry, promhttp.HandlerOpts{}))
	return mux
}

// checkReady pings Redis and PostgreSQL concurrently and returns what
// failed, by name.
func checkReady(ctx context.Context, d *deps, draining *atomic.Bool) map[string]string {
	failed := map[string]string{}
	if draining.Load() {
		failed["worker"] = "shutting down"
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	check := func(name string, ping func(context.Context) error) {
		wg.Go(func() {
			if err := ping(ctx); err != nil {
				mu.Lock()
				failed[name] = err.Error()
				mu.Unlock()
			}
		})
	}
	check("redis", func(ctx context.Context) error { return d.Redis.Ping(ctx).Err() })
	check("postgres", d.Pool.Ping)
	wg.Wait()
	return failed
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
