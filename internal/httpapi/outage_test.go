package httpapi_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestEnqueueWithRedisDownIs503WithoutFairDispatch: without fair dispatch
// the enqueue routes go through asynq's client, which reports a failed
// script call as text only; with Redis stopped they answered 500 "internal
// error" once the queue was known to the client (every request but the
// first of a process), where the contract says 503 with Retry-After.
func TestEnqueueWithRedisDownIs503WithoutFairDispatch(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	b := setupOn(t, srv.Addr(), nil)
	acme := b.active(t, "acme")
	post := func(path, body string) response {
		rq := request{method: http.MethodPost, host: acme.host(), path: path, bearer: acme.key}
		if body != "" {
			rq.body = strings.NewReader(body)
		}
		return b.do(t, rq)
	}
	// One task of each queue while Redis runs: the client knows the queues.
	wantStatus(t, post("/v1/invoices/1/pdf", ""), http.StatusAccepted)
	wantStatus(t, post("/v1/invoices/1/reminders", ""), http.StatusAccepted)
	srv.Stop(t)

	for _, rq := range []struct{ path, body string }{
		{"/v1/invoices/2/pdf", ""},
		{"/v1/invoices/2/reminders", ""},
		{"/v1/invoices/pdf", `{"invoice_ids":[3,4]}`},
	} {
		r := post(rq.path, rq.body)
		if r.status != http.StatusServiceUnavailable {
			t.Errorf("POST %s with Redis stopped: %d %s, want 503", rq.path, r.status, r.body)
			continue
		}
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("POST %s: Retry-After %q", rq.path, r.header.Get("Retry-After"))
		}
	}
}
