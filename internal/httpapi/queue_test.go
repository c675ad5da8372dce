package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// TestBacklogFullIs429: past a tenant's waiting cap an enqueue gets 429
// with Retry-After and a JSON error, nothing is accepted, and another
// tenant is not affected.
func TestBacklogFullIs429(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "busy")
	other := b.active(t, "calm")
	wantStatus(t, b.admin(t, http.MethodPut, "/admin/tenants/"+tn.ID+"/limits", `{"max_waiting":3}`), http.StatusOK)
	post := func(tn tenant, id int) response {
		return b.do(t, request{method: http.MethodPost, path: fmt.Sprintf("/v1/invoices/%d/pdf", id), host: tn.host(), bearer: tn.key})
	}
	for id := 1; id <= 4; id++ { // one admitted, three waiting
		wantStatus(t, post(tn, id), http.StatusAccepted)
	}
	r := post(tn, 5)
	wantStatus(t, r, http.StatusTooManyRequests)
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	if msg := r.errorText(t); !strings.Contains(msg, "nothing was accepted") {
		t.Fatalf("429 error %q", msg)
	}
	// A repeat of a waiting task is its existing task, not a 429.
	r = post(tn, 3)
	wantStatus(t, r, http.StatusAccepted)
	if m := r.json(t); m["existing"] != true || m["state"] != "pending" {
		t.Fatalf("repeat at the cap: %v", m)
	}
	wantStatus(t, post(other, 5), http.StatusAccepted)
	// The waiting task is visible to its tenant as pending.
	r = b.do(t, request{method: http.MethodGet, path: "/v1/tasks/invoice:pdf:" + tn.ID + ":4", host: tn.host(), bearer: tn.key})
	wantStatus(t, r, http.StatusOK)
	if m := r.json(t); m["state"] != "pending" || m["type"] != tasks.TypeInvoicePDF {
		t.Fatalf("waiting task state: %v", m)
	}
}

// TestQueueFullIs503: past the cap on all tenants' backlogs of a queue
// (FAIR_MAX_WAITING_TOTAL) a render is answered 503 with Retry-After and a
// JSON error that blames the service, not the tenant; nothing of the
// request is accepted, single or bulk, and repeats still answer 202.
func TestQueueFullIs503(t *testing.T) {
	t.Parallel()
	b := setupFairConfig(t, fair.Config{MinPending: 1, MaxWaitingTotal: 4})
	one, two := b.active(t, "one"), b.active(t, "two")
	post := func(tn tenant, id int) response {
		return b.do(t, request{method: http.MethodPost, path: fmt.Sprintf("/v1/invoices/%d/pdf", id), host: tn.host(), bearer: tn.key})
	}
	for id := 1; id <= 3; id++ { // one admitted, two waiting
		wantStatus(t, post(one, id), http.StatusAccepted)
	}
	wantStatus(t, post(two, 1), http.StatusAccepted)
	wantStatus(t, post(two, 2), http.StatusAccepted) // four waiting in all
	before := b.queue(t, one) + b.queue(t, two)
	r := post(two, 3)
	wantStatus(t, r, http.StatusServiceUnavailable)
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	if msg := r.errorText(t); !strings.Contains(msg, "nothing was accepted") || strings.Contains(msg, "tenant") {
		t.Fatalf("503 error %q", msg)
	}
	r = b.do(t, request{method: http.MethodPost, path: "/v1/invoices/pdf", host: one.host(), bearer: one.key, body: strings.NewReader(`{"invoice_ids":[2,4]}`)})
	wantStatus(t, r, http.StatusServiceUnavailable)
	wantStatus(t, post(one, 2), http.StatusAccepted) // a repeat of a waiting task
	if n := b.queue(t, one) + b.queue(t, two); n != before {
		t.Fatalf("%d tasks waiting or admitted after the refused requests, %d before", n, before)
	}
}

// TestBulkPDF: one request enqueues up to 1,000 renders, deduplicated per
// invoice like the single route; malformed batches are 400; a batch naming
// an invoice the tenant does not have is 404 with the missing ids, and
// enqueues nothing.
func TestBulkPDF(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "bulk")
	bulk := func(body string) response {
		return b.do(t, request{method: http.MethodPost, path: "/v1/invoices/pdf", host: tn.host(), bearer: tn.key, body: strings.NewReader(body)})
	}
	var ids []string
	for i := 1; i <= 40; i++ {
		ids = append(ids, strconv.Itoa(i))
	}
	r := bulk(`{"invoice_ids":[` + strings.Join(ids, ",") + `]}`)
	wantStatus(t, r, http.StatusAccepted)
	var got struct {
		Tasks []struct {
			InvoiceID int64  `json:"invoice_id"`
			TaskID    string `json:"task_id"`
			State     string `json:"state"`
			Existing  bool   `json:"existing"`
		} `json:"tasks"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil || len(got.Tasks) != 40 {
		t.Fatalf("bulk answer %s: %v", r.body, err)
	}
	for i, task := range got.Tasks {
		if task.InvoiceID != int64(i+1) || task.TaskID != fmt.Sprintf("invoice:pdf:%s:%d", tn.ID, i+1) || task.State != "pending" || task.Existing {
			t.Fatalf("task %d: %+v", i, task)
		}
	}
	r = bulk(`{"invoice_ids":[1,2,41]}`)
	wantStatus(t, r, http.StatusAccepted)
	if err := json.Unmarshal(r.body, &got); err != nil || !got.Tasks[0].Existing || !got.Tasks[1].Existing || got.Tasks[2].Existing {
		t.Fatalf("repeat batch: %s", r.body)
	}

	// Missing invoices: 404, the missing ids named, nothing enqueued.
	before := b.queue(t, tn)
	r = bulk(`{"invoice_ids":[42,9001,43,9002]}`)
	wantStatus(t, r, http.StatusNotFound)
	var missing struct {
		Error   string  `json:"error"`
		Missing []int64 `json:"missing"`
		Count   int     `json:"missing_count"`
	}
	if err := json.Unmarshal(r.body, &missing); err != nil || len(missing.Missing) != 2 || missing.Missing[0] != 9001 || missing.Missing[1] != 9002 || missing.Count != 2 {
		t.Fatalf("missing invoices answer %s (%v)", r.body, err)
	}
	if after := b.queue(t, tn); after != before {
		t.Errorf("a batch with missing invoices changed the tenant's queue: %d -> %d tasks", before, after)
	}
	many := make([]string, tasks.MaxBatch+1)
	for i := range many {
		many[i] = strconv.Itoa(i + 1)
	}
	for _, bad := range []string{`{"invoice_ids":[]}`, `{"invoice_ids":[1,0]}`, `{"invoice_ids":[1],"invoice_ids":[2]}`, `{"invoice_ids":[-3]}`, `{"invoice_ids":"1"}`, `{}`,
		`{"invoice_ids":[` + strings.Join(many, ",") + `]}`} {
		wantStatus(t, bulk(bad), http.StatusBadRequest)
	}
}

// TestBulkPDFPartWayWithoutFairDispatch: without fair dispatch a batch is
// enqueued one task at a time; when Redis fails part-way, the answer names
// the tasks enqueued before the error, and the same batch sent again once
// Redis works is answered in full, the earlier tasks as existing.
func TestBulkPDFPartWayWithoutFairDispatch(t *testing.T) {
	t.Parallel()
	const before = 10 // enqueue scripts that succeed before the failure
	var scripts atomic.Int64
	var failing atomic.Bool
	b := setup(t, func(o *httpapi.Options) {
		rdb := redis.NewClient(&redis.Options{Addr: o.RedisConnOpt.(asynq.RedisClientOpt).Addr})
		rdb.AddHook(failAfter{n: before, count: &scripts, on: &failing})
		client := asynq.NewClientFromRedisClient(rdb)
		t.Cleanup(func() { _ = rdb.Close() })
		o.Enqueuer = tasks.NewEnqueuer(client, asynq.NewInspectorFromRedisClient(rdb), nil)
	})
	tn := b.active(t, "partial")
	ids := make([]string, activeInvoices)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	body := `{"invoice_ids":[` + strings.Join(ids, ",") + `]}`
	bulk := func() response {
		return b.do(t, request{method: http.MethodPost, path: "/v1/invoices/pdf", host: tn.host(), bearer: tn.key, body: strings.NewReader(body)})
	}

	failing.Store(true)
	r := bulk()
	if r.status != http.StatusInternalServerError {
		t.Fatalf("batch with Redis failing part-way: %d %s, want 500", r.status, r.body)
	}
	var got struct {
		Error string `json:"error"`
		Tasks []struct {
			InvoiceID int64  `json:"invoice_id"`
			TaskID    string `json:"task_id"`
		} `json:"tasks"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil || len(got.Tasks) != before {
		t.Fatalf("part-way answer %s (%v): want the %d tasks enqueued before the error", r.body, err, before)
	}
	for i, task := range got.Tasks {
		if task.InvoiceID != int64(i+1) || task.TaskID != fmt.Sprintf("invoice:pdf:%s:%d", tn.ID, i+1) {
			t.Fatalf("task %d of the part-way answer: %+v", i, task)
		}
		if _, err := b.inspector.GetTaskInfo(tasks.QueueDefault, task.TaskID); err != nil {
			t.Errorf("task %s named as enqueued is not in Redis: %v", task.TaskID, err)
		}
	}
	if !strings.Contains(got.Error, fmt.Sprintf("after %d of %d tasks", before, activeInvoices)) {
		t.Errorf("error %q does not say how far the batch got", got.Error)
	}

	failing.Store(false)
	r = bulk()
	wantStatus(t, r, http.StatusAccepted)
	var again struct {
		Tasks []struct {
			Existing bool `json:"existing"`
		} `json:"tasks"`
	}
	if err := json.Unmarshal(r.body, &again); err != nil || len(again.Tasks) != activeInvoices {
		t.Fatalf("batch again: %s (%v)", r.body, err)
	}
	for i, task := range again.Tasks {
		if task.Existing != (i < before) {
			t.Errorf("task %d existing = %v after %d were enqueued part-way", i, task.Existing, before)
		}
	}
}

// failAfter is a go-redis hook failing every script call after the first
// n while on is set.
type failAfter struct {
	n     int64
	count *atomic.Int64
	on    *atomic.Bool
}

func (failAfter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (f failAfter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); f.on.Load() && (name == "evalsha" || name == "eval") && f.count.Add(1) > f.n {
			err := errors.New("injected failure")
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (failAfter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestTenantQueueRoutes: the operator's view and control of one tenant's
// backlog.
func TestTenantQueueRoutes(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "ops")
	for id := 1; id <= 4; id++ {
		wantStatus(t, b.do(t, request{method: http.MethodPost, path: fmt.Sprintf("/v1/invoices/%d/pdf", id), host: tn.host(), bearer: tn.key}), http.StatusAccepted)
	}
	q := b.admin(t, http.MethodGet, "/admin/tenants/"+tn.ID+"/queue", "")
	wantStatus(t, q, http.StatusOK)
	m := q.json(t)
	if m["waiting"].(float64) < 3 || m["waiting_by_type"].(map[string]any)[tasks.TypeInvoicePDF].(float64) < 3 {
		t.Fatalf("queue view %s", q.body)
	}
	r := b.admin(t, http.MethodPost, "/admin/tenants/"+tn.ID+"/queue/pause", "")
	wantStatus(t, r, http.StatusOK)
	if r.json(t)["paused"] != true {
		t.Fatalf("pause answer %s", r.body)
	}
	wantStatus(t, b.admin(t, http.MethodPost, "/admin/tenants/"+tn.ID+"/queue/resume", ""), http.StatusOK)
	r = b.admin(t, http.MethodPost, "/admin/tenants/"+tn.ID+"/queue/drain", "")
	wantStatus(t, r, http.StatusOK)
	if r.json(t)["discarded"].(float64) < 4 {
		t.Fatalf("drain answer %s", r.body)
	}
	for _, field := range []string{"waiting", "admitted", "parked", "retrying", "scheduled"} {
		if _, ok := r.json(t)[field].(float64); !ok {
			t.Fatalf("drain answer %s has no count %q", r.body, field)
		}
	}
	wantStatus(t, b.admin(t, http.MethodGet, "/admin/tenants/tn_nosuchtenantatallxxxxxxxxx/queue", ""), http.StatusNotFound)
	wantStatus(t, b.admin(t, http.MethodPut, "/admin/tenants/"+tn.ID+"/limits", `{"weight":-1}`), http.StatusBadRequest)
	wantStatus(t, b.admin(t, http.MethodPut, "/admin/tenants/"+tn.ID+"/limits", `{"weight":1,"extra":2}`), http.StatusBadRequest)
	r = b.admin(t, http.MethodPut, "/admin/tenants/"+tn.ID+"/limits", `{"plan":"enterprise","max_running":3}`)
	wantStatus(t, r, http.StatusOK)
	if m := r.json(t); m["plan"] != "enterprise" || m["limits"].(map[string]any)["max_running"] != float64(3) || m["id"] != tn.ID {
		t.Fatalf("limits answer %s", r.body)
	}
	// It names the effective limits too: the enterprise plan's weight and
	// backlog cap, the override's running cap.
	if p, want := r.json(t)["policy"], map[string]any{"weight": float64(4), "max_running": float64(3), "max_waiting": float64(200_000)}; !maps.Equal(p.(map[string]any), want) {
		t.Fatalf("limits answer's policy %v, want %v", p, want)
	}
	// The queue view names the policy's fields as the limits route does:
	// now the enterprise plan's weight and backlog cap and the override's
	// cap, in each queue the tenant has a backlog in too (PUT limits
	// reaches them at once, not with the next enqueue).
	q = b.admin(t, http.MethodGet, "/admin/tenants/"+tn.ID+"/queue", "")
	wantStatus(t, q, http.StatusOK)
	view := q.json(t)
	if p, want := view["policy"], map[string]any{"weight": float64(4), "max_running": float64(3), "max_waiting": float64(200_000)}; !maps.Equal(p.(map[string]any), want) {
		t.Fatalf("queue view's policy %v, want %v", p, want)
	}
	for _, qs := range view["queues"].([]any) {
		p := qs.(map[string]any)["policy"].(map[string]any)
		if want := map[string]any{"weight": float64(4), "max_running": float64(3), "max_waiting": float64(200_000)}; qs.(map[string]any)["queue"] == tasks.QueueDefault && !maps.Equal(p, want) {
			t.Fatalf("policy of queue %v: %v, want %v", qs.(map[string]any)["queue"], p, want)
		}
	}
	// Without fair dispatch the queue routes say so.
	plain := setup(t)
	pt := plain.active(t, "plain")
	r = plain.admin(t, http.MethodGet, "/admin/tenants/"+pt.ID+"/queue", "")
	wantStatus(t, r, http.StatusConflict)
	if !strings.Contains(r.errorText(t), "FAIR_DISPATCH") {
		t.Fatalf("no-dispatch error %s", r.body)
	}
}

// queue is the number of tn's tasks waiting or admitted, from the admin
// route GET /admin/tenants/{id}/queue.
func (b *bundle) queue(t *testing.T, tn tenant) int {
	t.Helper()
	r := b.admin(t, http.MethodGet, "/admin/tenants/"+tn.ID+"/queue", "")
	wantStatus(t, r, http.StatusOK)
	m := r.json(t)
	return int(m["waiting"].(float64) + m["admitted"].(float64))
}

// TestQueuesRoute: GET /admin/queues sums every tenant's work per queue
// and names the largest backlogs, agreeing with each tenant's own view;
// it needs the admin token, checks top, and says when fair dispatch is
// off.
func TestQueuesRoute(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	big, small := b.active(t, "busy"), b.active(t, "calm")
	for tn, n := range map[tenant]int{big: 9, small: 2} {
		for id := 1; id <= n; id++ {
			wantStatus(t, b.do(t, request{method: http.MethodPost, path: fmt.Sprintf("/v1/invoices/%d/pdf", id), host: tn.host(), bearer: tn.key}), http.StatusAccepted)
		}
	}
	r := b.admin(t, http.MethodGet, "/admin/queues?top=1", "")
	wantStatus(t, r, http.StatusOK)
	var got struct {
		Queues []fair.Overview `json:"queues"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("%s: %v", r.body, err)
	}
	var names []string
	for _, o := range got.Queues {
		names = append(names, o.Queue)
		named := 0
		for _, d := range o.Top {
			named += d.Waiting
		}
		if named > o.Waiting || len(o.Top) > o.BacklogTenants || o.Pending > o.Admitted || o.Workers != 0 {
			t.Errorf("queue %s: inconsistent overview %+v (no worker runs here)", o.Queue, o)
		}
		if o.Queue != tasks.QueueDefault { // critical holds the tenants' migrations
			continue
		}
		if o.Waiting+o.Admitted != 11 {
			t.Errorf("default: %d waiting and %d admitted, want the 11 renders", o.Waiting, o.Admitted)
		}
		view := b.admin(t, http.MethodGet, "/admin/tenants/"+big.ID+"/queue", "").json(t)
		if len(o.Top) != 1 || o.Top[0].TenantID != big.ID || float64(o.Top[0].Waiting) != view["waiting"] {
			t.Errorf("default's top %+v, want only %s with the %v waiting its own view shows", o.Top, big.ID, view["waiting"])
		}
	}
	if !slices.Equal(names, tasks.Queues) {
		t.Errorf("queues %v, want every class %v", names, tasks.Queues)
	}

	for _, top := range []string{"0", "101", "x", "-1"} {
		wantStatus(t, b.admin(t, http.MethodGet, "/admin/queues?top="+top, ""), http.StatusBadRequest)
	}
	wantStatus(t, b.do(t, request{method: http.MethodGet, path: "/admin/queues"}), http.StatusUnauthorized)
	wantStatus(t, b.do(t, request{method: http.MethodGet, path: "/admin/queues", host: small.host(), bearer: small.key}), http.StatusUnauthorized)
	r = setup(t).admin(t, http.MethodGet, "/admin/queues", "")
	wantStatus(t, r, http.StatusConflict)
	if !strings.Contains(r.errorText(t), "FAIR_DISPATCH") {
		t.Fatalf("no-dispatch error %s", r.body)
	}
}

// TestQueueRoutesOfDeletingTenant: pause, resume, drain and limits of a
// tenant being deleted answer 409 (they would stop, discard or release
// work of the tenant being erased; its deletion lifted every hold), and
// its destroy stays in asynq; an unknown plan is 400.
func TestQueueRoutesOfDeletingTenant(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "leaving")
	wantStatus(t, b.admin(t, http.MethodPut, "/admin/tenants/"+tn.ID+"/limits", `{"plan":"enterprize"}`), http.StatusBadRequest)
	wantStatus(t, b.admin(t, http.MethodDelete, "/admin/tenants/"+tn.ID, ""), http.StatusAccepted)
	for _, c := range []struct{ method, path, body string }{
		{http.MethodPost, "/queue/pause", ""},
		{http.MethodPost, "/queue/resume", ""},
		{http.MethodPost, "/queue/drain", ""},
		{http.MethodPut, "/limits", `{"max_running":1}`},
	} {
		r := b.admin(t, c.method, "/admin/tenants/"+tn.ID+c.path, c.body)
		wantStatus(t, r, http.StatusConflict)
		if msg := r.errorText(t); !strings.Contains(msg, "being deleted") {
			t.Fatalf("%s %s: error %q", c.method, c.path, msg)
		}
	}
	if _, err := b.inspector.GetTaskInfo(tasks.QueueCritical, tasks.TenantDestroy{TenantID: tn.ID}.Spec().TaskID); err != nil {
		t.Fatalf("destroy after the refused routes: %v", err)
	}
}

// TestPauseOfProvisioningTenantIs409: pausing the queue of a tenant still
// being provisioned answers 409 saying so: the pause would hold its
// tenant:migrate, and the tenant would stay provisioning until a resume.
// Once active it can be paused.
func TestPauseOfProvisioningTenantIs409(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.provisioned(t, "fresh")
	r := b.admin(t, http.MethodPost, "/admin/tenants/"+tn.ID+"/queue/pause", "")
	wantStatus(t, r, http.StatusConflict)
	if msg := r.errorText(t); !strings.Contains(msg, "provisioned") {
		t.Fatalf("pause of a provisioning tenant: error %q, want it to say the tenant is being provisioned", msg)
	}
	if _, err := b.inspector.GetTaskInfo(tasks.QueueCritical, tasks.TenantMigrate{TenantID: tn.ID}.Spec().TaskID); err != nil {
		t.Fatalf("tenant:migrate after the refused pause: %v", err)
	}
}

// TestDrainOfProvisioningTenantIs409: draining the queue of a tenant still
// being provisioned answers 409 saying so: the drain would discard its
// tenant:migrate, and the tenant would stay provisioning until
// POST /admin/migrations.
func TestDrainOfProvisioningTenantIs409(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.provisioned(t, "fresh")
	r := b.admin(t, http.MethodPost, "/admin/tenants/"+tn.ID+"/queue/drain", "")
	wantStatus(t, r, http.StatusConflict)
	if msg := r.errorText(t); !strings.Contains(msg, "provisioned") || !strings.Contains(msg, "drain") {
		t.Fatalf("drain of a provisioning tenant: error %q, want it to say the tenant is being provisioned", msg)
	}
	if _, err := b.inspector.GetTaskInfo(tasks.QueueCritical, tasks.TenantMigrate{TenantID: tn.ID}.Spec().TaskID); err != nil {
		t.Fatalf("tenant:migrate after the refused drain: %v", err)
	}
}

// TestProvisionRefusedWhenQueueFull: when the tenant's migration cannot
// be queued (the critical queue's backlogs at FAIR_MAX_WAITING_TOTAL),
// POST /admin/tenants answers 503 with Retry-After, keeps nothing, and the
// slug can be provisioned once there is room.
func TestProvisionRefusedWhenQueueFull(t *testing.T) {
	t.Parallel()
	b := setupFairConfig(t, fair.Config{MinPending: 1, MaxWaitingTotal: 1})
	b.provisioned(t, "first")            // its migration admitted to asynq
	second := b.provisioned(t, "second") // its migration waits: the queue is full
	create := func() response {
		return b.admin(t, http.MethodPost, "/admin/tenants", `{"slug":"third"}`)
	}
	r := create()
	wantStatus(t, r, http.StatusServiceUnavailable)
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	if _, err := b.pg.TenantBySlug(t.Context(), "third"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("tenant of the refused provisioning: %v, want none", err)
	}
	if n, err := b.dispatcher.Drain(t.Context(), second.ID, tasks.QueueCritical); err != nil || n.Total() != 1 {
		t.Fatalf("drain second: %+v, %v", n, err)
	}
	wantStatus(t, create(), http.StatusAccepted)
}

// TestLimitsBodyNullIsRefused: a PUT /admin/tenants/{id}/limits body of
// JSON null is not an object and is refused (400), like any other body
// that is not one; before, encoding/json read it as an empty object and
// the call reset every limit of the tenant to its plan's.
func TestLimitsBodyNullIsRefused(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "nullish")
	wantStatus(t, b.admin(t, http.MethodPut, "/admin/tenants/"+tn.ID+"/limits", `{"max_running":3}`), http.StatusOK)
	r := b.admin(t, http.MethodPut, "/admin/tenants/"+tn.ID+"/limits", `null`)
	wantStatus(t, r, http.StatusBadRequest)
	if got := r.errorText(t); !strings.Contains(got, "the body must be an object") {
		t.Fatalf("error %q", got)
	}
	if cur, err := b.pg.TenantByID(t.Context(), tn.ID); err != nil || cur.Limits.MaxRunning != 3 {
		t.Fatalf("limits after a null body: %+v, %v; want max_running 3 kept", cur.Limits, err)
	}
}
