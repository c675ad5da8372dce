package httpapi_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBodyReadFailureIsNotAGoError: a client that stops sending its body
// half-way is cut off by the server's read timeout (enqueueapp sets one).
// The answer was 400 "invalid request body: read tcp
// 127.0.0.1:PORT->127.0.0.1:PORT: i/o timeout": Go's error text, naming
// the service's own and its peer's socket addresses (behind a proxy, the
// internal ones), where the package promises the JSON's own terms and a
// tenant never sees an error message. A body that did not arrive in time
// is 408, and nothing of the read error reaches the client; a body that
// cannot be read (broken chunked encoding) is 400 without details.
func TestBodyReadFailureIsNotAGoError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	srv := httptest.NewUnstartedServer(b.handler)
	srv.Config.ReadTimeout = 500 * time.Millisecond // the bound of the wait, not a measurement
	srv.Start()
	t.Cleanup(srv.Close)

	send := func(t *testing.T, raw string) (int, string) {
		t.Helper()
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Minute))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("read answer: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var e struct{ Error string }
		if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
			t.Fatalf("status %d: not a JSON error: %q", resp.StatusCode, body)
		}
		for _, leak := range []string{"tcp", "127.0.0.1", "i/o", "chunk"} {
			if strings.Contains(e.Error, leak) {
				t.Errorf("status %d: error %q shows Go's read error (%q)", resp.StatusCode, e.Error, leak)
			}
		}
		return resp.StatusCode, e.Error
	}
	head := fmt.Sprintf("POST /v1/invoices/pdf HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n", acme.host(), acme.key)

	// Half a body, then nothing until the read timeout.
	status, msg := send(t, head+"Content-Length: 100\r\n\r\n"+`{"invoice_ids":[1,`)
	if status != http.StatusRequestTimeout {
		t.Errorf("stalled body: status %d (%q), want 408", status, msg)
	}
	// A chunked body whose chunk size is not hex.
	status, msg = send(t, head+"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
	if status != http.StatusBadRequest {
		t.Errorf("broken chunked body: status %d (%q), want 400", status, msg)
	}
}
