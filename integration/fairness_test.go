package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// queueView is GET /admin/tenants/{id}/queue.
type queueView struct {
	Waiting       int            `json:"waiting"`
	Admitted      int            `json:"admitted"`
	Running       int            `json:"running"`
	Parked        int            `json:"parked"`
	WaitingByType map[string]int `json:"waiting_by_type"`
	Paused        bool           `json:"paused"`
	Suspended     bool           `json:"suspended"`
}

// queue reads a tenant's queue view through enqueue service p.
func (s *stack) queue(p *proc, tn tenantRef) queueView {
	s.t.Helper()
	status, body, err := httpDo(context.Background(), http.MethodGet, p.url("/admin/tenants/"+tn.ID+"/queue"), "", adminToken, nil)
	if err != nil || status != http.StatusOK {
		s.t.Fatalf("queue of %s: %d %s %v", tn.Slug, status, body, err)
	}
	var v queueView
	if err := json.Unmarshal(body, &v); err != nil {
		s.t.Fatalf("queue of %s: %s: %v", tn.Slug, body, err)
	}
	return v
}

// setLimits sets a tenant's limits through the admin API.
func (s *stack) setLimits(tn tenantRef, limits map[string]int) {
	s.t.Helper()
	status, body := s.api(http.MethodPut, "/admin/tenants/"+tn.ID+"/limits", "", adminToken, limits)
	if status != http.StatusOK {
		s.t.Fatalf("limits of %s: %d %s", tn.Slug, status, body)
	}
}

// bulkPDF posts one bulk render request for ids through enqueue service p.
func bulkPDF(ctx context.Context, p *proc, tn tenantRef, ids []int) (int, []byte, error) {
	body, _ := json.Marshal(map[string][]int{"invoice_ids": ids})
	return httpDo(ctx, http.MethodPost, p.url("/v1/invoices/pdf"), tn.host(), tn.Key, body)
}

// taskState reads GET /v1/tasks/{id} as the tenant.
func (s *stack) taskState(tn tenantRef, id string) string {
	s.t.Helper()
	status, body := s.api(http.MethodGet, "/v1/tasks/"+id, tn.host(), tn.Key, nil)
	if status != http.StatusOK {
		return fmt.Sprintf("http %d", status)
	}
	var v struct {
		State string `json:"state"`
	}
	_ = json.Unmarshal(body, &v)
	return v.State
}

// TestFairnessQuietTenantFirst is P13 of docs/architecture.md: a noisy
// tenant posts 20,000 renders through two enqueue services, then a quiet
// tenant asks for five; with two workers the quiet tenant's renders finish
// while most of the noisy backlog still waits, and the noisy tenant never
// has more tasks running than its cap, over every handler run the workers
// logged.
func TestFairnessQuietTenantFirst(t *testing.T) {
	t.Parallel()
	noisyN := envInt(t, "FAIRNESS_NOISY", 20000)
	const capRunning = 3
	s := newStack(t, stackOptions{workers: 2, concurrency: 4})
	second := startProc(t, "enqueue-2", testenv.BuildBinary(t, enqueuePkg), s.env(nil), "serve")
	second.waitReady()
	tns := s.provision([]string{"noisy", "quiet"}, tenantName)
	noisy, quiet := tns[0], tns[1]
	s.setLimits(noisy, map[string]int{"max_running": capRunning, "max_waiting": noisyN + 1000})
	s.seed(noisy, invoiceSeed{sent: noisyN, lines: 1})
	s.seed(quiet, invoiceSeed{sent: 5, lines: 2})

	// The noisy tenant's backlog, through both enqueue services at once.
	ctx := context.Background()
	var wg sync.WaitGroup
	var posted atomic.Int64
	for b := 0; b*1000 < noisyN; b++ {
		ids := make([]int, 0, 1000)
		for id := b*1000 + 1; id <= min((b+1)*1000, noisyN); id++ {
			ids = append(ids, id)
		}
		p := []*proc{s.enqueue, second}[b%2]
		wg.Go(func() {
			status, body, err := bulkPDF(ctx, p, noisy, ids)
			if err != nil || status != http.StatusAccepted {
				t.Errorf("bulk %d..%d: %d %s %v", ids[0], ids[len(ids)-1], status, body, err)
				return
			}
			posted.Add(int64(len(ids)))
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	start := time.Now()
	var quietIDs []string
	for id := 1; id <= 5; id++ {
		status, body, err := httpDo(ctx, http.MethodPost, second.url(fmt.Sprintf("/v1/invoices/%d/pdf", id)), quiet.host(), quiet.Key, nil)
		if err != nil || status != http.StatusAccepted {
			t.Fatalf("quiet render %d: %d %s %v", id, status, body, err)
		}
		var e enqueued
		_ = json.Unmarshal(body, &e)
		quietIDs = append(quietIDs, e.TaskID)
	}
	eventually(t, 60*time.Second, 20*time.Millisecond, "the quiet tenant's renders complete", func() error {
		for _, id := range quietIDs {
			if st := s.taskState(quiet, id); st != "completed" {
				return fmt.Errorf("%s is %s", id, st)
			}
		}
		return nil
	})
	took := time.Since(start)
	view := s.queue(s.enqueue, noisy)
	t.Logf("quiet tenant's 5 renders took %v; the noisy tenant still had %d waiting of %d", took, view.Waiting, posted.Load())
	if view.Waiting < noisyN/2 {
		t.Errorf("the quiet tenant waited for the noisy backlog: only %d of %d noisy renders still wait", view.Waiting, noisyN)
	}

	// Let the noisy backlog run a while longer, then check its cap over
	// every handler run of both workers: from their logs, not by sampling
	// asynq's active list, which still holds a task for a moment after its
	// handler returned and reported it (so a sample could show the task
	// admitted in its place as well, on a loaded machine).
	noisyRuns := func() []taskRun {
		var runs []taskRun
		for _, w := range s.workers {
			runs = append(runs, w.taskRuns(noisy.ID)...)
		}
		return runs
	}
	runsBefore := len(noisyRuns())
	eventually(t, 120*time.Second, 50*time.Millisecond, "more of the noisy backlog runs", func() error {
		if n := len(noisyRuns()) - runsBefore; n < 10*capRunning {
			return fmt.Errorf("%d more noisy tasks ran", n)
		}
		return nil
	})
	runs := noisyRuns()
	if most, at := maxOverlap(runs); most > capRunning {
		t.Errorf("the noisy tenant had %d tasks running at once (at %s), cap %d", most, at.Format(time.RFC3339Nano), capRunning)
	} else {
		t.Logf("the noisy tenant ran %d tasks, at most %d at once (cap %d)", len(runs), most, capRunning)
	}
	if v := s.queue(second, noisy); v.Running > capRunning || v.Admitted > capRunning {
		t.Errorf("queue view of the noisy tenant %+v exceeds the cap %d", v, capRunning)
	}
	status, body := s.api(http.MethodPost, "/admin/tenants/"+noisy.ID+"/queue/drain", "", adminToken, nil)
	if status != http.StatusOK {
		t.Fatalf("drain: %d %s", status, body)
	}
	s.waitDrained(60 * time.Second)
	checkFairKeys(t, s)
}

// TestFairnessControls: a suspended tenant's backlog costs no handler runs
// and runs in full after it resumes; an operator's drain removes only that
// tenant's tasks; past its waiting cap a tenant gets 429 with Retry-After
// and nothing of the request is accepted.
func TestFairnessControls(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{workers: 1, concurrency: 2})
	tns := s.provision([]string{"held", "drained", "kept", "capped"}, tenantName)
	held, drained, kept, capped := tns[0], tns[1], tns[2], tns[3]
	for _, tn := range tns {
		s.seed(tn, invoiceSeed{sent: 300, lines: 1})
	}
	s.setLimits(held, map[string]int{"max_running": 1})
	ctx := context.Background()
	ids := make([]int, 300)
	for i := range ids {
		ids[i] = i + 1
	}

	// Suspended: nothing of the backlog runs, nothing is retried.
	if status, body, err := bulkPDF(ctx, s.enqueue, held, ids); err != nil || status != http.StatusAccepted {
		t.Fatalf("held bulk: %d %s %v", status, body, err)
	}
	if status, body := s.api(http.MethodPost, "/admin/tenants/"+held.ID+"/suspend", "", adminToken, nil); status != http.StatusOK {
		t.Fatalf("suspend: %d %s", status, body)
	}
	// Tasks that had started finish: wait until none is active, however
	// long a render takes on a loaded machine.
	eventually(t, 60*time.Second, 50*time.Millisecond, "the tasks that had started to finish", func() error {
		c, err := s.counts()
		if err != nil {
			return err
		}
		if c.active != 0 {
			return fmt.Errorf("%d tasks active", c.active)
		}
		return nil
	})
	attempts := func() int {
		if st := s.workers[0].taskSummary()[tasks.TypeInvoicePDF]; st != nil {
			return st.n
		}
		return 0
	}
	before := attempts()
	time.Sleep(3 * time.Second)
	if after := attempts(); after != before {
		t.Errorf("%d task attempts while the tenant was suspended", after-before)
	}
	v := s.queue(s.enqueue, held)
	if !v.Suspended || v.Waiting+v.Parked == 0 {
		t.Fatalf("suspended tenant's queue %+v", v)
	}
	// The operators' overview: the held backlog, and the one live worker
	// with its slots (from its heartbeats). A heartbeat lives five of the
	// worker's one-second intervals; a worker starved that long on a
	// loaded machine drops out until its next one, so the overview is
	// read until it shows the worker (the rest of it is stable).
	eventually(t, 60*time.Second, 200*time.Millisecond, "the overview of the held backlog and the live worker", func() error {
		status, body := s.api(http.MethodGet, "/admin/queues", "", adminToken, nil)
		var overview struct {
			Queues []fair.Overview `json:"queues"`
		}
		if err := json.Unmarshal(body, &overview); status != http.StatusOK || err != nil {
			t.Fatalf("GET /admin/queues: %d %s %v", status, body, err)
		}
		var wrong []string
		for _, o := range overview.Queues {
			if o.Workers != 1 || o.WorkerSlots != 2 {
				wrong = append(wrong, fmt.Sprintf("queue %s: %d workers with %d slots, want the one worker of concurrency 2", o.Queue, o.Workers, o.WorkerSlots))
			}
			if o.Queue == tasks.QueueDefault && (o.HeldTenants != 1 || o.Waiting < v.Waiting || len(o.Top) == 0 || o.Top[0].TenantID != held.ID) {
				wrong = append(wrong, fmt.Sprintf("default's overview %+v: want the suspended tenant held, its %d waiting renders on top", o, v.Waiting))
			}
		}
		if len(wrong) > 0 {
			return errors.New(strings.Join(wrong, "; "))
		}
		return nil
	})
	if status, body := s.api(http.MethodPost, "/admin/tenants/"+held.ID+"/resume", "", adminToken, nil); status != http.StatusOK {
		t.Fatalf("resume: %d %s", status, body)
	}

	// Drain one tenant while another's tasks run: the kept tenant's are
	// enqueued first, the drained tenant's right before the drain.
	for _, tn := range []tenantRef{kept, drained} {
		if status, body, err := bulkPDF(ctx, s.enqueue, tn, ids); err != nil || status != http.StatusAccepted {
			t.Fatalf("%s bulk: %d %s %v", tn.Slug, status, body, err)
		}
	}
	status, body := s.api(http.MethodPost, "/admin/tenants/"+drained.ID+"/queue/drain", "", adminToken, nil)
	if status != http.StatusOK {
		t.Fatalf("drain: %d %s", status, body)
	}
	var d struct {
		Discarded int `json:"discarded"`
	}
	_ = json.Unmarshal(body, &d)
	if d.Discarded < 1 {
		t.Errorf("drain discarded %d of the 300 renders", d.Discarded)
	}

	// Past the waiting cap: 429, nothing accepted.
	s.setLimits(capped, map[string]int{"max_waiting": 5})
	if status, body := s.api(http.MethodPost, "/admin/tenants/"+capped.ID+"/queue/pause", "", adminToken, nil); status != http.StatusOK {
		t.Fatalf("pause: %d %s", status, body)
	}
	for id := 1; id <= 5; id++ {
		s.mustPost(capped, "pdf", id)
	}
	wantRefused(t, s, capped, 6, http.StatusTooManyRequests, "past the tenant's cap")
	if v := s.queue(s.enqueue, capped); v.Waiting != 5 || !v.Paused {
		t.Fatalf("capped tenant's queue %+v, want the 5 accepted waiting", v)
	}
	if status, body := s.api(http.MethodPost, "/admin/tenants/"+capped.ID+"/queue/resume", "", adminToken, nil); status != http.StatusOK {
		t.Fatalf("resume queue: %d %s", status, body)
	}

	s.waitDrained(180 * time.Second)
	// Every render of the held and the kept tenant ran, each once.
	for _, tn := range []tenantRef{held, kept} {
		var n int
		if err := s.db.QueryRow(ctx, `SELECT count(*) FROM `+tn.Schema+`.invoice_documents`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 300 {
			t.Errorf("%s: %d of 300 invoices rendered", tn.Slug, n)
		}
	}
	// The drained tenant's renders that had started before the drain ran;
	// the rest were discarded: each either way, none both, none lost.
	var rendered int
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM `+drained.Schema+`.invoice_documents`).Scan(&rendered); err != nil {
		t.Fatal(err)
	}
	if rendered+d.Discarded != 300 {
		t.Errorf("drained tenant: %d rendered and %d discarded, want 300 in all", rendered, d.Discarded)
	}
	runs := map[string]int{}
	for _, line := range strings.Split(s.workers[0].logText(), "\n") {
		if !strings.Contains(line, `"msg":"task finished"`) || !strings.Contains(line, `"outcome":"ok"`) {
			continue
		}
		var l struct {
			TaskID string `json:"task_id"`
		}
		if json.Unmarshal([]byte(line), &l) == nil {
			runs[l.TaskID]++
		}
	}
	for id, n := range runs {
		if n > 1 {
			t.Errorf("task %s ran %d times", id, n)
		}
	}
	checkFairKeys(t, s)
}

// wantRefused posts tn's render of invoice id and fails unless it is
// answered with status and a Retry-After of at least a second.
func wantRefused(t *testing.T, s *stack, tn tenantRef, id, status int, what string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.enqueue.url(fmt.Sprintf("/v1/invoices/%d/pdf", id)), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = tn.host()
	req.Header.Set("Authorization", "Bearer "+tn.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if retry, _ := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != status || retry < 1 {
		t.Fatalf("%s: %d, Retry-After %q; want %d with a Retry-After", what, resp.StatusCode, resp.Header.Get("Retry-After"), status)
	}
}

// checkFairKeys: every dispatcher key that names a tenant names a valid
// tenant id (hostile ids never become part of a key).
func checkFairKeys(t *testing.T, s *stack) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.redis.Addr()})
	defer rdb.Close()
	keys, err := rdb.Keys(context.Background(), "fair:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		_, rest, _ := strings.Cut(k, "}:")
		for _, prefix := range []string{"t:", "b:", "run:", "parked:", "kept:"} {
			if id, ok := strings.CutPrefix(rest, prefix); ok {
				if err := tenantctx.ValidateID(id); err != nil {
					t.Errorf("dispatcher key %q names an invalid tenant id: %v", k, err)
				}
			}
		}
	}
}

// TestQueueWideBacklogCap: with FAIR_MAX_WAITING_TOTAL=6 on the built
// binaries, a paused tenant's waiting renders fill the default queue's
// backlogs, and another tenant's render is then refused with 503 and
// Retry-After; once the paused tenant resumes and its renders run, the
// other tenant's render is accepted and runs.
func TestQueueWideBacklogCap(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{concurrency: 2, env: map[string]string{"FAIR_MAX_WAITING_TOTAL": "6"}})
	tns := s.provision([]string{"filler", "latecomer"}, tenantName)
	filler, late := tns[0], tns[1]
	for _, tn := range tns {
		s.seed(tn, invoiceSeed{sent: 8, lines: 1})
	}
	if status, body := s.api(http.MethodPost, "/admin/tenants/"+filler.ID+"/queue/pause", "", adminToken, nil); status != http.StatusOK {
		t.Fatalf("pause: %d %s", status, body)
	}
	for id := 1; id <= 6; id++ {
		s.mustPost(filler, "pdf", id)
	}
	wantRefused(t, s, late, 1, http.StatusServiceUnavailable, "past the queue's cap")
	if v := s.queue(s.enqueue, late); v.Waiting+v.Admitted != 0 {
		t.Fatalf("the refused tenant's queue %+v, want nothing accepted", v)
	}
	if status, body := s.api(http.MethodPost, "/admin/tenants/"+filler.ID+"/queue/resume", "", adminToken, nil); status != http.StatusOK {
		t.Fatalf("resume: %d %s", status, body)
	}
	s.waitDrained(60 * time.Second)
	task := s.mustPost(late, "pdf", 1)
	eventually(t, 60*time.Second, 100*time.Millisecond, "the latecomer's render", func() error {
		if st := s.taskState(late, task.TaskID); st != "completed" {
			return fmt.Errorf("state %s", st)
		}
		return nil
	})
}
