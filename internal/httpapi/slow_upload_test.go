package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/httpapi"
)

// TestSlowUploadIsNotCountedAsTheServicesTime: a request's body is the
// client's to send, bounded by the server's read timeout (30 s, then
// 408); REQUEST_TIMEOUT and ADMIN_REQUEST_TIMEOUT bound the service's own
// work (look-ups, database, Redis). Their clock started before the body
// was read, so a bulk render request or an admin change whose body took
// longer than the route's timeout to arrive (a slow mobile link), though
// well within the read timeout, was answered 503 "service temporarily
// unavailable" (or "did not complete ... a dependency did not answer in
// time") before the service had done anything: a retry fails the same
// way, and the log blamed the database. A request that then runs out of
// its own time must still get its 503 within the server's write timeout,
// which counts from the request's start.
func TestSlowUploadIsNotCountedAsTheServicesTime(t *testing.T) {
	t.Parallel()
	const timeout = time.Second // REQUEST_TIMEOUT and ADMIN_REQUEST_TIMEOUT, scaled down from 10 s
	b := setup(t, func(o *httpapi.Options) { o.RequestTimeout, o.AdminRequestTimeout = timeout, timeout })
	acme := b.active(t, "acme")

	// serve starts a server over the handler with the read and write
	// timeouts enqueueapp gives it, scaled down as the route timeouts are.
	serve := func(t *testing.T, read, write time.Duration) string {
		srv := httptest.NewUnstartedServer(b.handler)
		srv.Config.ReadTimeout, srv.Config.WriteTimeout = read, write
		srv.Start()
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().String()
	}
	// send writes the request with the first bytes of its body, waits
	// upload, then sends the rest, and reads the answer.
	send := func(t *testing.T, addr, head, body string, upload time.Duration) (int, http.Header, string) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := fmt.Fprintf(c, "%sContent-Length: %d\r\n\r\n%s", head, len(body), body[:5]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(upload)
		if _, err := io.WriteString(c, body[5:]); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Minute)) // a bound for the failure message
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("status %d, body cut: %v", resp.StatusCode, err)
		}
		return resp.StatusCode, resp.Header, string(got)
	}
	bulk := fmt.Sprintf("POST /v1/invoices/pdf HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n", acme.host(), acme.key)

	// The defaults: read timeout 30 s, write timeout 60 s; a body that
	// takes 20 s to arrive.
	t.Run("bulk render", func(t *testing.T) {
		t.Parallel()
		addr := serve(t, 3*timeout, 6*timeout)
		if status, _, body := send(t, addr, bulk, `{"invoice_ids":[1,2,3]}`, 2*timeout); status != http.StatusAccepted {
			t.Errorf("bulk request whose body took longer than REQUEST_TIMEOUT to arrive: %d %s, want 202", status, body)
		}
	})
	t.Run("admin change", func(t *testing.T) {
		t.Parallel()
		addr := serve(t, 3*timeout, 6*timeout)
		head := fmt.Sprintf("PUT /admin/tenants/%s/limits HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n", acme.ID, adminToken)
		if status, _, body := send(t, addr, head, `{"max_waiting":7}`, 2*timeout); status != http.StatusOK {
			t.Errorf("limits whose body took longer than ADMIN_REQUEST_TIMEOUT to arrive: %d %s, want 200", status, body)
		}
	})
	// A REQUEST_TIMEOUT large beside the write timeout's margin (50 s:
	// write timeout 65 s, read timeout 30 s): a request whose body took
	// most of the read timeout and whose work then runs out of time (the
	// tenant's invoices locked) still gets its 503.
	t.Run("then out of time", func(t *testing.T) {
		ctx := context.Background()
		tx, err := b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{acme.Schema, "invoices"}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		addr := serve(t, 3*timeout/5, 13*timeout/10)
		status, hdr, body := send(t, addr, bulk, `{"invoice_ids":[4,5,6]}`, timeout/2)
		if s, err := strconv.Atoi(hdr.Get("Retry-After")); status != http.StatusServiceUnavailable || err != nil || s < 1 {
			t.Errorf("bulk request out of time after a slow body: %d Retry-After %q %s, want 503 with Retry-After", status, hdr.Get("Retry-After"), body)
		}
	})
}
