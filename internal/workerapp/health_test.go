package workerapp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/readiness"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestHealthServerHasTimeouts: the worker's health server bounds how long
// a client may take to send its request and how long an idle connection
// stays open.
func TestHealthServerHasTimeouts(t *testing.T) {
	t.Parallel()
	srv := newHealthServer(http.NotFoundHandler(), defaultHealthTimeouts, slog.New(slog.DiscardHandler))
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": srv.ReadHeaderTimeout, "ReadTimeout": srv.ReadTimeout,
		"WriteTimeout": srv.WriteTimeout, "IdleTimeout": srv.IdleTimeout,
	} {
		if d <= 0 {
			t.Errorf("health server %s = %v, want a timeout", name, d)
		}
	}
	if srv.WriteTimeout <= readyTimeout {
		t.Errorf("WriteTimeout %v leaves /readyz (up to %v) no time to answer", srv.WriteTimeout, readyTimeout)
	}
}

// TestHealthServerDropsStalledAndIdleConnections: with short timeouts, a
// client that stops in the middle of its request body, and a kept-alive
// connection left idle, are closed by the server.
func TestHealthServerDropsStalledAndIdleConnections(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	srv := newHealthServer(ok, healthTimeouts{
		ReadHeader: 200 * time.Millisecond, Read: 300 * time.Millisecond,
		Write: time.Second, Idle: 300 * time.Millisecond,
	}, slog.New(slog.DiscardHandler))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})

	for name, request := range map[string]string{
		"idle after a request":  "GET /healthz HTTP/1.1\r\nHost: worker\r\n\r\n",
		"stalled request body":  "GET /healthz HTTP/1.1\r\nHost: worker\r\nContent-Length: 1000\r\n\r\nonly a few bytes",
		"stalled header (slow)": "GET /healthz HTTP/1.1\r\nHost: worker\r\n",
	} {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, request); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := conn.SetReadDeadline(start.Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		// The client does nothing more: the server answers (or not) and
		// closes the connection.
		_, err = io.Copy(io.Discard, conn)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("%s: connection still open after %v", name, time.Since(start).Round(time.Millisecond))
				continue
			}
			t.Errorf("%s: %v", name, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: closed after %v", name, d)
		}
	}
}

// TestRunHealthServerDropsAStalledClient: the health server Run starts
// has the timeouts too: a client that sends part of its request headers
// and stalls is disconnected after defaultHealthTimeouts.ReadHeader, not
// kept for ever.
func TestRunHealthServerDropsAStalledClient(t *testing.T) {
	t.Parallel()
	w := startWorker(t, testenv.RedisURL(t), nil)
	conn, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: worker\r\n"); err != nil {
		t.Fatal(err)
	}
	// A bound for the failure message, not a measurement: well past the
	// header timeout.
	wait := defaultHealthTimeouts.ReadHeader + 10*time.Second
	if err := conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, conn); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("connection with stalled headers still open after %v: Run's health server has no header timeout", wait)
	}
}

// TestReadyzNamesFailuresWithoutErrors: /readyz answers 503 naming the
// check that failed, never its error (an address, a user, a database),
// which goes to the log; shutting down is named too.
func TestReadyzNamesFailuresWithoutErrors(t *testing.T) {
	t.Parallel()
	secret := errors.New(`dial tcp 10.1.2.3:6379: connect: connection refused (user "billing", database "invoicing")`)
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	var draining atomic.Bool
	h := readyHandler(map[string]readiness.Check{
		"redis":    func(context.Context) error { return secret },
		"postgres": func(context.Context) error { return nil },
	}, &draining, logger)

	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	code, body := get()
	if code != http.StatusServiceUnavailable || body != `{"failed":{"redis":"unavailable"},"status":"unavailable"}`+"\n" {
		t.Errorf("/readyz with Redis down = %d %s", code, body)
	}
	for _, leak := range []string{"10.1.2.3", "billing", "invoicing", "refused"} {
		if strings.Contains(body, leak) {
			t.Errorf("/readyz answer holds %q: %s", leak, body)
		}
	}
	if !strings.Contains(logs.String(), "readiness check failed") || !strings.Contains(logs.String(), "10.1.2.3:6379") {
		t.Errorf("the error is not in the log: %s", logs.String())
	}
	draining.Store(true)
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, `"worker":"shutting down"`) {
		t.Errorf("/readyz while shutting down = %d %s", code, body)
	}
}
