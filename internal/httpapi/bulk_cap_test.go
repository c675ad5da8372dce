package httpapi_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestBulkPDFLargerThanWaitingCap: a bulk request that would add more new
// tasks than the tenant's max_waiting can never be accepted whole, however
// long its client waits, so it must not be answered 429 with Retry-After
// (a client following it retries forever): it is 413, without Retry-After,
// naming the cap. A batch that fits the cap once the backlog drains stays
// 429 with Retry-After, and ids named twice or already waiting count once
// or not at all.
func TestBulkPDFLargerThanWaitingCap(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "smallcap")
	wantStatus(t, b.admin(t, http.MethodPut, "/admin/tenants/"+tn.ID+"/limits", `{"max_waiting":3}`), http.StatusOK)
	bulk := func(body string) response {
		return b.do(t, request{method: http.MethodPost, path: "/v1/invoices/pdf", host: tn.host(), bearer: tn.key, body: strings.NewReader(body)})
	}

	before := b.queue(t, tn) // its tenant:migrate
	// Five new renders, with nothing waiting: more than the cap of 3.
	r := bulk(`{"invoice_ids":[1,2,3,4,5]}`)
	if r.status != http.StatusRequestEntityTooLarge || r.header.Get("Retry-After") != "" {
		t.Fatalf("batch of 5 new renders under a waiting cap of 3: %d (Retry-After %q) %s; want 413 without Retry-After: no retry can succeed",
			r.status, r.header.Get("Retry-After"), r.body)
	}
	if msg := r.errorText(t); !strings.Contains(msg, "nothing was accepted") || !strings.Contains(msg, "3") {
		t.Fatalf("413 error %q: want it to say nothing was accepted and name the cap", msg)
	}
	if n := b.queue(t, tn); n != before {
		t.Fatalf("%d tasks queued after the refused batch, %d before", n, before)
	}

	// Duplicates count once: 2 new tasks.
	wantStatus(t, bulk(`{"invoice_ids":[1,1,1,1,2]}`), http.StatusAccepted)
	// 3 more new ones fit the cap but not the backlog now: retry later.
	r = bulk(`{"invoice_ids":[1,2,3,4,5]}`)
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("batch that fits once the backlog drains: %d %s, want 429", r.status, r.body)
	}
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("429 Retry-After %q", r.header.Get("Retry-After"))
	}
}
