package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/invoicing/tenantworker/internal/logctx"
)

// requestInfo is filled in while a request is served and read by observe
// afterwards: which route matched and which tenant it acted for.
type requestInfo struct {
	id       string
	pattern  string
	tenantID string
}

type infoKey struct{}

// info returns the request's mutable requestInfo; a request that did not
// pass through observe (a unit test calling a handler) gets a throwaway one.
func info(ctx context.Context) *requestInfo {
	if ri, ok := ctx.Value(infoKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{}
}

// named records the matched route pattern for the access log and metrics.
func named(pattern string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info(r.Context()).pattern = pattern
		next.ServeHTTP(w, r)
	})
}

// observe is the outermost middleware: request id (also a log attribute
// of every line logged with the request's ctx), panic recovery, access
// log and metrics.
func (h *Handler) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &requestInfo{id: requestID(r.Header.Get("X-Request-Id"))}
		w.Header().Set("X-Request-Id", ri.id)
		sw := &statusWriter{ResponseWriter: w}
		// The request id also rides in ctx as a log attribute (logctx):
		// the lines the components log on the request's path (the tenant
		// service, the tenant cache, the enqueuer), through the process's
		// logger built on logctx.Handler, carry it too.
		ctx := logctx.With(r.Context(), slog.String("request_id", ri.id))
		r = r.WithContext(context.WithValue(ctx, infoKey{}, ri))

		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler { //nolint:errorlint // sentinel compared as net/http does
					// The handler aborts the answer on purpose: net/http
					// drops the connection. The request is still logged
					// and counted.
					h.record(r, ri, sw, time.Since(start))
					panic(p)
				}
				h.log.LogAttrs(r.Context(), slog.LevelError, "http handler panic",
					slog.String("request_id", ri.id), slog.String("route", ri.pattern),
					slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())))
				if !sw.wroteHeader {
					writeError(sw, http.StatusInternalServerError, "internal error")
				}
			}
			h.record(r, ri, sw, time.Since(start))
		}()

		next.ServeHTTP(sw, r)
	})
}

// limitBody answers 413 for a body announced over MaxBodyBytes and limits
// the body a route reads. It runs inside adminSubtree, so that a 413 under
// /admin carries the anti-framing headers (and is 404 while the admin
// routes are disabled).
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxBodyBytes {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", MaxBodyBytes))
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		}
		next.ServeHTTP(w, r)
	})
}

// record writes the access log line and updates the metrics.
func (h *Handler) record(r *http.Request, ri *requestInfo, sw *statusWriter, d time.Duration) {
	status := sw.status
	if !sw.wroteHeader {
		status = http.StatusOK
	}
	route := ri.pattern
	if route == "" {
		route = "unmatched"
	}
	h.metrics.observe(route, status, d)

	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("route", route),
		slog.String("path", r.URL.Path),
		slog.Int("status", status),
		slog.Duration("duration", d),
		slog.Int64("bytes", sw.bytes),
		slog.String("request_id", ri.id),
	}
	if ri.tenantID != "" {
		attrs = append(attrs, slog.String("tenant_id", ri.tenantID))
	}
	h.log.LogAttrs(r.Context(), level, "http request", attrs...)
}

// maxRequestIDLen bounds an accepted X-Request-Id.
const maxRequestIDLen = 64

// requestID returns the incoming id when it is sane (1..64 of
// [A-Za-z0-9._:-]), otherwise a fresh random one: a client must not be able
// to put arbitrary text into every log line.
func requestID(in string) string {
	if len(in) > 0 && len(in) <= maxRequestIDLen {
		ok := true
		for i := 0; i < len(in); i++ {
			c := in[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
				ok = false
				break
			}
		}
		if ok {
			return in
		}
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return hex.EncodeToString(b[:])
}

// statusWriter remembers the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = http.StatusOK, true
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// jsonMuxErrors turns the mux's own plain-text 404 and 405 answers (no route
// matched) into JSON errors; the 405's Allow header is kept.
func jsonMuxErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(&muxErrorWriter{ResponseWriter: w, ri: info(r.Context())}, r)
	})
}

// muxErrorWriter rewrites 404 and 405 written while no route matched.
type muxErrorWriter struct {
	http.ResponseWriter
	ri      *requestInfo
	swallow bool
}

func (w *muxErrorWriter) WriteHeader(code int) {
	if w.ri.pattern == "" && (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) {
		w.swallow = true
		msg := "not found"
		if code == http.StatusMethodNotAllowed {
			msg = "method not allowed"
		}
		writeError(w.ResponseWriter, code, msg)
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *muxErrorWriter) Write(p []byte) (int, error) {
	if w.swallow {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *muxErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// isBodyTooLarge reports whether err comes from the MaxBytesReader limit.
func isBodyTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// statusText is strconv.Itoa for metric labels.
func statusText(code int) string { return strconv.Itoa(code) }
