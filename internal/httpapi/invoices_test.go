package httpapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

func TestEnqueuePDF(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	enqueue := func(id string) response {
		return b.do(t, request{method: http.MethodPost, host: acme.host(), path: "/v1/invoices/" + id + "/pdf", bearer: acme.key})
	}

	r := enqueue("42")
	wantStatus(t, r, http.StatusAccepted)
	got := r.json(t)
	id, _ := got["task_id"].(string)
	if id == "" || got["queue"] != tasks.QueueDefault || got["state"] != "pending" || got["existing"] != false {
		t.Fatalf("enqueue answer %s", r.body)
	}
	ti := b.taskInfo(t, tasks.QueueDefault, id)
	if ti.Type != tasks.TypeInvoicePDF || payloadTenant(t, ti) != acme.ID {
		t.Fatalf("queued task type %s tenant %s", ti.Type, payloadTenant(t, ti))
	}
	var p tasks.InvoicePDF
	if err := json.Unmarshal(ti.Payload, &p); err != nil || p.InvoiceID != 42 {
		t.Fatalf("payload %s (%v)", ti.Payload, err)
	}

	// A repeat while pending is the same task.
	r = enqueue("42")
	wantStatus(t, r, http.StatusAccepted)
	if again := r.json(t); again["task_id"] != id || again["existing"] != true {
		t.Fatalf("repeat answer %s, first task %s", r.body, id)
	}
	// Another invoice is another task.
	r = enqueue("43")
	wantStatus(t, r, http.StatusAccepted)
	if r.json(t)["task_id"] == id {
		t.Fatal("invoice 43 got invoice 42's task")
	}
	if n, err := b.inspector.GetQueueInfo(tasks.QueueDefault); err != nil || n.Pending != 2 {
		t.Fatalf("default queue: %+v, %v; want 2 pending", n, err)
	}

	for _, bad := range []string{"0", "-1", "abc", "1e3", "1.5", "+1", "%201", "0x10",
		strings.Repeat("9", 20), "9223372036854775808", "18446744073709551616"} {
		r := enqueue(bad)
		if r.status != http.StatusBadRequest {
			t.Errorf("invoice id %q: status %d, want 400", bad, r.status)
			continue
		}
		_ = r.errorText(t)
	}
	// A well-formed id of no invoice is 404 (TestEnqueueMissingInvoice).
	wantStatus(t, enqueue(strconv.FormatInt(1<<63-1, 10)), http.StatusNotFound)
}

// TestEnqueueMissingInvoice: an enqueue for an invoice the tenant does not
// have is 404 at the API, checked in the tenant's own schema, and enqueues
// nothing: before, each became a task archived at once, and archives are
// shared and capped (P15 in docs/architecture.md).
func TestEnqueueMissingInvoice(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	for _, path := range []string{"/v1/invoices/999/pdf", "/v1/invoices/999/reminders", "/v1/invoices/9223372036854775807/pdf"} {
		r := b.do(t, request{method: http.MethodPost, host: acme.host(), path: path, bearer: acme.key})
		wantStatus(t, r, http.StatusNotFound)
		if got := r.errorText(t); got != "invoice not found" {
			t.Errorf("POST %s: error %q", path, got)
		}
	}
	for _, q := range []string{tasks.QueueDefault, tasks.QueueLow} {
		if qi, err := b.inspector.GetQueueInfo(q); err == nil && qi.Size != 0 {
			t.Errorf("queue %s holds %d tasks after enqueues of missing invoices", q, qi.Size)
		}
	}
	// An invoice that exists is enqueued as before.
	wantStatus(t, b.do(t, request{method: http.MethodPost, host: acme.host(), path: "/v1/invoices/1/pdf", bearer: acme.key}), http.StatusAccepted)
}

func TestEnqueueReminder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	remind := func(id string) response {
		return b.do(t, request{method: http.MethodPost, host: acme.host(), path: "/v1/invoices/" + id + "/reminders", bearer: acme.key})
	}
	r := remind("5")
	wantStatus(t, r, http.StatusAccepted)
	first := r.json(t)
	id := first["task_id"].(string)
	if first["queue"] != tasks.QueueLow || !strings.Contains(id, "2026-03-14") {
		t.Fatalf("reminder answer %s", r.body)
	}
	var p tasks.InvoiceReminder
	if err := json.Unmarshal(b.taskInfo(t, tasks.QueueLow, id).Payload, &p); err != nil ||
		p != (tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: 5, Day: "2026-03-14"}) {
		t.Fatalf("payload %+v (%v)", p, err)
	}
	// At most one per invoice per day.
	for range 3 {
		r := remind("5")
		wantStatus(t, r, http.StatusAccepted)
		if r.json(t)["task_id"] != id {
			t.Fatalf("second reminder the same day: %s", r.body)
		}
	}
	if q, err := b.inspector.GetQueueInfo(tasks.QueueLow); err != nil || q.Size != 1 {
		t.Fatalf("low queue %+v, %v; want 1 task", q, err)
	}
	wantStatus(t, remind("abc"), http.StatusBadRequest)
}

// runWorker processes the default queue until the test ends with a handler
// that answers per invoice id: 1 writes a JSON result, 2 a text result, 3
// fails for good.
func runWorker(t *testing.T, b *bundle) {
	t.Helper()
	srv := asynq.NewServer(b.redisOpt, asynq.Config{
		Queues: map[string]int{tasks.QueueDefault: 1}, Concurrency: 2, LogLevel: asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeInvoicePDF, func(_ context.Context, task *asynq.Task) error {
		var p tasks.InvoicePDF
		if err := json.Unmarshal(task.Payload(), &p); err != nil {
			return err
		}
		switch p.InvoiceID {
		case 1:
			_, err := task.ResultWriter().Write([]byte(`{"storage_key":"invoices/1.pdf","bytes":123}`))
			return err
		case 2:
			_, err := task.ResultWriter().Write([]byte("rendered, not json"))
			return err
		}
		return fmt.Errorf("invoice %d does not exist: %w", p.InvoiceID, asynq.SkipRetry)
	})
	if err := srv.Start(mux); err != nil {
		t.Fatalf("start asynq server: %v", err)
	}
	t.Cleanup(srv.Shutdown)
}

func TestTaskState(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	globex := b.active(t, "globex")

	ids := map[int]string{}
	for inv := 1; inv <= 3; inv++ {
		r := b.do(t, request{method: http.MethodPost, host: acme.host(), path: fmt.Sprintf("/v1/invoices/%d/pdf", inv), bearer: acme.key})
		wantStatus(t, r, http.StatusAccepted)
		ids[inv] = r.json(t)["task_id"].(string)
	}
	state := func(tn tenant, id string) response {
		return b.do(t, request{method: http.MethodGet, host: tn.host(), path: "/v1/tasks/" + id, bearer: tn.key})
	}

	r := state(acme, ids[1])
	wantStatus(t, r, http.StatusOK)
	got := r.json(t)
	if got["task_id"] != ids[1] || got["type"] != tasks.TypeInvoicePDF || got["state"] != "pending" ||
		got["retried"] != float64(0) || got["last_error"] != "" || got["result"] != nil {
		t.Fatalf("pending task %s", r.body)
	}

	// Another tenant's task ids, guessed or exact, are 404 like unknown ones.
	for _, id := range []string{ids[1], "invoice:pdf:" + acme.ID + ":2", "nope", strings.Repeat("x", 300)} {
		r := state(globex, id)
		wantStatus(t, r, http.StatusNotFound)
		if got := r.errorText(t); got != "task not found" {
			t.Fatalf("error %q", got)
		}
	}
	// A guessed id of the right shape for the caller's own tenant that does
	// not exist.
	wantStatus(t, state(acme, "invoice:pdf:"+acme.ID+":999"), http.StatusNotFound)

	runWorker(t, b)
	final := func(id string) map[string]any {
		deadline := time.Now().Add(time.Minute)
		for {
			r := state(acme, id)
			wantStatus(t, r, http.StatusOK)
			m := r.json(t)
			if s := m["state"]; s == "completed" || s == "archived" {
				return m
			}
			if time.Now().After(deadline) {
				t.Fatalf("task %s not finished: %s", id, r.body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if m := final(ids[1]); m["state"] != "completed" {
		t.Fatalf("task 1: %v", m)
	} else if res, ok := m["result"].(map[string]any); !ok || res["storage_key"] != "invoices/1.pdf" || res["bytes"] != float64(123) {
		t.Fatalf("JSON result not passed through raw: %#v", m["result"])
	}
	if m := final(ids[2]); m["state"] != "completed" || m["result"] != "rendered, not json" {
		t.Fatalf("task 2: %v", m)
	}
	// The error message stays with the operators; with no record of the
	// archive (this test's worker writes none), the tenant sees "failed".
	if m := final(ids[3]); m["state"] != "archived" || m["last_error"] != "failed" {
		t.Fatalf("task 3: %v", m)
	}

	// A finished render is replaced by a new request.
	r = b.do(t, request{method: http.MethodPost, host: acme.host(), path: "/v1/invoices/3/pdf", bearer: acme.key})
	wantStatus(t, r, http.StatusAccepted)
	if m := r.json(t); m["existing"] != false || m["state"] != "pending" {
		t.Fatalf("re-render after archive: %s", r.body)
	}
}

// storeDocument inserts a customer, an invoice with number and a rendered
// document for it in the tenant's schema, and returns the invoice id.
func (b *bundle) storeDocument(t *testing.T, tn tenant, number string, content []byte) (int64, string) {
	t.Helper()
	ctx := tenantctx.WithTenant(context.Background(), tn.Tenant)
	var id int64
	err := schema.InTenant(ctx, b.pool, func(ctx context.Context, tx pgx.Tx) error {
		ids, err := invoice.Create(ctx, tx, invoice.New{Number: number, Status: "sent", Currency: "EUR",
			Customer: invoice.Customer{Name: "C", Email: "c@example.com"}})
		if err == nil {
			id = ids[0]
		}
		return err
	})
	if err != nil {
		t.Fatalf("insert invoice: %v", err)
	}
	if content == nil {
		return id, ""
	}
	key := invoice.DocumentKey(id)
	di, err := b.docs.Put(ctx, tn.ID, key, bytes.NewReader(content))
	if err != nil {
		t.Fatalf("put document: %v", err)
	}
	sum := sha256.Sum256(content)
	if di.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("document sha %s", di.SHA256)
	}
	err = schema.InTenant(ctx, b.pool, func(ctx context.Context, tx pgx.Tx) error {
		return invoice.RecordDocument(ctx, tx, invoice.Document{InvoiceID: id, StorageKey: key, SHA256: di.SHA256, Bytes: di.Bytes})
	})
	if err != nil {
		t.Fatalf("insert invoice document: %v", err)
	}
	return id, di.SHA256
}

func TestDownloadPDF(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	globex := b.active(t, "globex")
	get := func(tn tenant, id int64, header http.Header) response {
		return b.do(t, request{method: http.MethodGet, host: tn.host(), path: fmt.Sprintf("/v1/invoices/%d/pdf", id), bearer: tn.key, header: header})
	}

	// Not rendered yet, and not existing at all.
	draft, _ := b.storeDocument(t, acme, "INV-1", nil)
	for _, id := range []int64{draft, 999} {
		r := get(acme, id, nil)
		wantStatus(t, r, http.StatusNotFound)
		_ = r.errorText(t)
	}

	content := []byte("%PDF-1.7\nfake but bytes\n%%EOF\n")
	id, sum := b.storeDocument(t, acme, `INV/2026 "7"`+"\r\nX-Evil: 1", content)
	r := get(acme, id, nil)
	wantStatus(t, r, http.StatusOK)
	if !bytes.Equal(r.body, content) {
		t.Fatalf("body %q", r.body)
	}
	for k, want := range map[string]string{
		"Content-Type":        "application/pdf",
		"Etag":                `"` + sum + `"`,
		"Content-Length":      strconv.Itoa(len(content)),
		"Content-Disposition": `attachment; filename="INV_2026__7___X-Evil__1.pdf"`,
	} {
		if got := r.header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if r.header.Get("X-Evil") != "" {
		t.Fatal("header injection through the invoice number")
	}

	// Letters outside ASCII: an ASCII filename for every client, and
	// filename* (RFC 6266) with the letters kept; a bidi override, which
	// could disguise the extension, is not kept in either.
	for number, want := range map[string]struct{ header, parsed string }{
		"Rechnung-Müller/7":  {`attachment; filename="Rechnung-M_ller_7.pdf"; filename*=UTF-8''Rechnung-M%C3%BCller_7.pdf`, "Rechnung-Müller_7.pdf"},
		"Łódź 12":            {`attachment; filename="d__12.pdf"; filename*=UTF-8''%C5%81%C3%B3d%C5%BA_12.pdf`, "Łódź_12.pdf"},
		"INV-1\u202efdp.exe": {`attachment; filename="INV-1_fdp.exe.pdf"`, "INV-1_fdp.exe.pdf"},
	} {
		nid, _ := b.storeDocument(t, acme, number, content)
		r := get(acme, nid, nil)
		wantStatus(t, r, http.StatusOK)
		cd := r.header.Get("Content-Disposition")
		if cd != want.header {
			t.Errorf("number %q: Content-Disposition %q, want %q", number, cd, want.header)
		}
		if _, params, err := mime.ParseMediaType(cd); err != nil || params["filename"] != want.parsed {
			t.Errorf("number %q: Content-Disposition parses to %q (%v), want %q", number, params["filename"], err, want.parsed)
		}
	}

	for _, inm := range []string{`"` + sum + `"`, `W/"` + sum + `"`, `"other", "` + sum + `"`, "*"} {
		r := get(acme, id, http.Header{"If-None-Match": {inm}})
		wantStatus(t, r, http.StatusNotModified)
		if len(r.body) != 0 || r.header.Get("Etag") != `"`+sum+`"` {
			t.Fatalf("304 body %q etag %q", r.body, r.header.Get("Etag"))
		}
	}
	wantStatus(t, get(acme, id, http.Header{"If-None-Match": {`"stale"`}}), http.StatusOK)

	// The other tenant's schema has no such document (its own invoice ids
	// are its own).
	wantStatus(t, get(globex, id, nil), http.StatusNotFound)

	// A render replaces the file before it records the new row: the ETag
	// is the hash of the bytes served, and the old one no longer matches.
	newer := []byte("%PDF-1.7\nrendered again\n%%EOF\n")
	di, err := b.docs.Put(context.Background(), acme.ID, invoice.DocumentKey(id), bytes.NewReader(newer))
	if err != nil {
		t.Fatal(err)
	}
	r = get(acme, id, http.Header{"If-None-Match": {`"` + sum + `"`}})
	wantStatus(t, r, http.StatusOK)
	if !bytes.Equal(r.body, newer) || r.header.Get("Etag") != `"`+di.SHA256+`"` {
		t.Fatalf("after the file changed: body %q, ETag %q; want the new bytes with ETag %q", r.body, r.header.Get("Etag"), di.SHA256)
	}

	// A row whose file went missing is 404, not 500, also to If-None-Match.
	if err := b.docs.DeleteTenant(context.Background(), acme.ID); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, get(acme, id, nil), http.StatusNotFound)
	wantStatus(t, get(acme, id, http.Header{"If-None-Match": {"*"}}), http.StatusNotFound)
	wantStatus(t, get(acme, 0, nil), http.StatusBadRequest)
}

// TestNotModifiedKeepsCacheControl: a 304 must carry the Cache-Control a
// 200 would have (RFC 9110 15.4.5); it carried only the ETag, so a cache
// revalidating its copy lost "private, no-cache" from it.
func TestNotModifiedKeepsCacheControl(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	id, sum := b.storeDocument(t, acme, "INV-304", []byte("%PDF-1.7\nnot modified\n%%EOF\n"))
	path := fmt.Sprintf("/v1/invoices/%d/pdf", id)
	full := b.do(t, request{method: http.MethodGet, host: acme.host(), path: path, bearer: acme.key})
	wantStatus(t, full, http.StatusOK)
	r := b.do(t, request{method: http.MethodGet, host: acme.host(), path: path, bearer: acme.key,
		header: http.Header{"If-None-Match": {`"` + sum + `"`}}})
	wantStatus(t, r, http.StatusNotModified)
	for _, k := range []string{"Etag", "Cache-Control"} {
		if got, want := r.header.Get(k), full.header.Get(k); got != want || want == "" {
			t.Errorf("304 %s %q, 200 %s %q", k, got, k, want)
		}
	}
}

// TestIfNoneMatchOverSeveralHeaderLines: If-None-Match is a list, and a
// list may come as several header lines (RFC 9110 5.3); only the first
// line was read, so a client naming its current tag on a later line got
// the whole PDF again.
func TestIfNoneMatchOverSeveralHeaderLines(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	id, sum := b.storeDocument(t, acme, "INV-LIST", []byte("%PDF-1.7\nlisted\n%%EOF\n"))
	path := fmt.Sprintf("/v1/invoices/%d/pdf", id)
	for _, lines := range [][]string{
		{`"old"`, `"` + sum + `"`},
		{`"old", "older"`, `W/"` + sum + `"`},
		{`"old"`, `*`},
	} {
		r := b.do(t, request{method: http.MethodGet, host: acme.host(), path: path, bearer: acme.key,
			header: http.Header{"If-None-Match": lines}})
		if r.status != http.StatusNotModified {
			t.Errorf("If-None-Match lines %q: status %d, want 304", lines, r.status)
		}
	}
	r := b.do(t, request{method: http.MethodGet, host: acme.host(), path: path, bearer: acme.key,
		header: http.Header{"If-None-Match": {`"old"`, `"older"`}}})
	wantStatus(t, r, http.StatusOK)
}
