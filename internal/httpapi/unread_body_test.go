package httpapi_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// unreadBodyClientWait bounds every read of the raw clients below: the
// answer and the server's close must come long before the server's read
// timeout (unreadBodyReadTimeout). A bound for the failure message, not a
// measurement.
const (
	unreadBodyClientWait  = 10 * time.Second
	unreadBodyReadTimeout = 2 * time.Minute
)

// unreadBodyServer serves b's handler, the chain the enqueue service
// serves, with a read timeout far above the clients' wait.
func unreadBodyServer(t *testing.T, b *bundle) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(b.handler)
	srv.Config.ReadTimeout = unreadBodyReadTimeout
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// rawConn is one client connection that writes raw HTTP/1.1 and reads
// the answers.
type rawConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{c: c, br: bufio.NewReader(c)}
}

// exchange writes raw and reads one answer with its body.
func (rc *rawConn) exchange(t *testing.T, raw string) (*http.Response, []byte) {
	t.Helper()
	if _, err := io.WriteString(rc.c, raw); err != nil {
		t.Fatalf("write request: %v", err)
	}
	_ = rc.c.SetReadDeadline(time.Now().Add(unreadBodyClientWait))
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatalf("no answer while the body is missing: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatalf("status %d: read body: %v", resp.StatusCode, err)
	}
	return resp, body
}

// wantClosed fails unless the server closes the connection (EOF) within
// the client's wait.
func (rc *rawConn) wantClosed(t *testing.T) {
	t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(unreadBodyClientWait))
	n, err := rc.br.Read(make([]byte, 1))
	switch {
	case errors.Is(err, io.EOF):
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("the server kept the connection open (read timeout %v)", unreadBodyReadTimeout)
	default:
		t.Fatalf("after the answer: read %d bytes, %v; want the server's close", n, err)
	}
}

// wantAnsweredAndClosed checks an answer written while the request's body
// had not arrived: the expected status, Connection: close, and the
// server closes the connection.
func wantAnsweredAndClosed(t *testing.T, addr, raw string, status int) {
	t.Helper()
	rc := dialRaw(t, addr)
	resp, body := rc.exchange(t, raw)
	if resp.StatusCode != status {
		t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, status)
	}
	if !resp.Close { // http.ReadResponse takes Connection: close out of the header into Close
		t.Errorf("status %d: no Connection: close", resp.StatusCode)
	}
	rc.wantClosed(t)
}

// TestWrongMethodWithUnsentBodyAnswersAtOnce: a POST announcing a body
// (Content-Length: 1000) to a GET-only route, whose body never comes. The
// mux answers 405 without reading it, and net/http then read the body
// before it wrote the status line: the client waited the server's read
// timeout (30 s) for its answer, holding a connection and a goroutine
// meanwhile. The 405 goes out at once with Connection: close, and the
// server closes the connection.
func TestWrongMethodWithUnsentBodyAnswersAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	addr := unreadBodyServer(t, b)
	for _, tc := range []struct{ name, path, host string }{
		{"operations", "/healthz", "localhost"},
		{"tenant", "/v1/tasks/x", acme.host()},
		{"admin", "/admin/queues", "localhost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
				tc.path, tc.host, adminToken)
			wantAnsweredAndClosed(t, addr, raw, http.StatusMethodNotAllowed)
		})
	}
}

// TestUnauthenticatedPostWithUnsentBodyAnswersAtOnce: the same for a
// request refused by authentication before its body is read: a tenant
// route that takes a body without a key and with an unknown one, another
// tenant's key (403), an unknown subdomain (404), and an admin route
// without the token.
func TestUnauthenticatedPostWithUnsentBodyAnswersAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	globex := b.active(t, "globex")
	addr := unreadBodyServer(t, b)
	for _, tc := range []struct {
		name, path, host, auth string
		status                 int
	}{
		{"no key", "/v1/invoices/pdf", acme.host(), "", http.StatusUnauthorized},
		{"unknown key", "/v1/invoices/pdf", acme.host(), "Authorization: Bearer tk_unknown\r\n", http.StatusUnauthorized},
		{"other tenant's key", "/v1/invoices/pdf", acme.host(), "Authorization: Bearer " + globex.key + "\r\n", http.StatusForbidden},
		{"unknown subdomain", "/v1/invoices/pdf", "nosuch" + suffix, "Authorization: Bearer " + acme.key + "\r\n", http.StatusNotFound},
		{"admin without token", "/admin/tenants", "localhost", "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\n%sContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
				tc.path, tc.host, tc.auth)
			wantAnsweredAndClosed(t, addr, raw, tc.status)
		})
	}
}

// TestReadBodyKeepsConnectionAlive: an authenticated POST whose body the
// route reads keeps its connection for the next request (keep-alive as
// before), and so does a GET without a body after it.
func TestReadBodyKeepsConnectionAlive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	addr := unreadBodyServer(t, b)
	rc := dialRaw(t, addr)
	body := `{"invoice_ids":[1,2]}`
	post := fmt.Sprintf("POST /v1/invoices/pdf HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		acme.host(), acme.key, len(body), body)
	for i := range 2 {
		resp, got := rc.exchange(t, post)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST %d: status %d (%s), want 202", i+1, resp.StatusCode, got)
		}
		if resp.Close {
			t.Fatalf("POST %d: Connection: close although its body was read", i+1)
		}
	}
	resp, got := rc.exchange(t, fmt.Sprintf("GET /v1/tasks/nope HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", acme.host(), acme.key))
	if resp.StatusCode != http.StatusNotFound || resp.Close {
		t.Fatalf("GET after the POSTs: status %d (%s), close %v; want 404 on a kept connection", resp.StatusCode, got, resp.Close)
	}
}

// TestRefusedPostWithSentBodyGetsItsAnswer: a client that sends its whole
// body (200 KB) to a route that refuses it unread (no key) still reads its
// 401 and then the server's orderly close, not a reset: what it sent is
// taken before the connection closes.
func TestRefusedPostWithSentBodyGetsItsAnswer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	addr := unreadBodyServer(t, b)
	rc := dialRaw(t, addr)
	body := strings.Repeat(" ", 200<<10)
	raw := fmt.Sprintf("POST /v1/invoices/pdf HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		acme.host(), len(body), body)
	resp, got := rc.exchange(t, raw)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d (%s), want 401", resp.StatusCode, got)
	}
	rc.wantClosed(t)
}
