package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/tasks"
)

// Size knobs of the isolation test (environment variables).
const (
	envTenants = "INTEGRATION_TENANTS" // default 20
	envTasks   = "INTEGRATION_TASKS"   // default 10000
)

// TestIsolationUnderLoad: 20 tenants with identical invoice ids and
// different data, 10,000 mixed tasks (PDF renders and reminders requested
// over HTTP, overdue sweeps from the scheduler fanning out to every tenant
// and its reminders) through two worker processes with 4 connections for
// 4 concurrent tasks each. Every PDF and every email holds only its own
// tenant's data (P1, P3, P4 in docs/architecture.md).
func TestIsolationUnderLoad(t *testing.T) {
	t.Parallel()
	runIsolation(t, false)
}

// TestIsolationUnderLoadPgBouncer is TestIsolationUnderLoad with every
// process connected through PgBouncer in transaction pooling mode with 4
// server connections, where a session-level SET search_path would leak
// between clients; afterwards every server connection PgBouncer holds has
// an empty search_path.
func TestIsolationUnderLoadPgBouncer(t *testing.T) {
	t.Parallel()
	runIsolation(t, true)
}

// pdfResult is the result of an invoice:pdf task.
type pdfResult struct {
	Key    string `json:"storage_key"`
	SHA256 string `json:"sha256"`
	Bytes  int64  `json:"bytes"`
}

func runIsolation(t *testing.T, bouncer bool) {
	nTenants := envInt(t, envTenants, 20)
	target := envInt(t, envTasks, 10000)
	// Per tenant: pdfInvoices overdue invoices get PDFs (rounds of HTTP
	// requests) and reminders (HTTP); sweepInvoices sent invoices past due
	// are found by the sweep, marked overdue and reminded. Reminders (one
	// per invoice per day, about four times cheaper than a render) make
	// about 60% of the target, PDF renders the other 40%; sweeps and
	// migrations come on top.
	pdfInvoices := max(1, target/(nTenants*40))                                        // 12 at the defaults
	sweepInvoices := max(1, target*6/10/nTenants-pdfInvoices)                          // 288 at the defaults
	reminders := nTenants * (pdfInvoices + sweepInvoices)                              // 6,000
	rounds := max(1, (target-reminders+nTenants*pdfInvoices-1)/(nTenants*pdfInvoices)) // 17 rounds of 240
	t.Logf("size: %d tenants, %d PDF invoices + %d sweep invoices each, %d PDF rounds, target %d tasks",
		nTenants, pdfInvoices, sweepInvoices, rounds, target)

	s := newStack(t, stackOptions{
		workers: 2, concurrency: 4, dbMaxConns: 4,
		bouncer: bouncer, bouncerPool: 4,
		sweepCron: "@every 2s",
	})
	ctx := context.Background()

	slugs := make([]string, nTenants)
	for i := range slugs {
		slugs[i] = fmt.Sprintf("firma-%02d", i)
	}
	tenants := s.provision(slugs, tenantName)
	for _, tn := range tenants {
		s.seed(tn, invoiceSeed{overdue: pdfInvoices, sent: sweepInvoices, lines: 3})
	}
	start := time.Now()

	// Reminders for the PDF invoices over HTTP, while the first round of
	// PDFs runs; the sweep finds the others.
	var remindErr atomic.Value
	var remindWG sync.WaitGroup
	remindWG.Go(func() {
		parallel(nTenants*pdfInvoices, 8, func(i int) {
			tn, id := tenants[i/pdfInvoices], i%pdfInvoices+1
			status, body, err := httpDo(ctx, http.MethodPost, s.enqueue.url(fmt.Sprintf("/v1/invoices/%d/reminders", id)), tn.host(), tn.Key, nil)
			if err == nil && status != http.StatusAccepted {
				err = fmt.Errorf("status %d: %s", status, body)
			}
			if err != nil {
				remindErr.Store(fmt.Errorf("reminder %s/%d: %w", tn.Slug, id, err))
			}
		})
	})

	// PDF rounds: request every invoice of every tenant, wait for the
	// queue to drain, record each render's SHA-256 from its task result.
	shas := map[string]map[string]bool{} // tenant/id -> set of SHA-256 seen
	pdfTasks := 0
	for r := range rounds {
		var mu sync.Mutex
		taskOf := map[string]string{} // task id -> tenant/id
		var reqErr error
		parallel(nTenants*pdfInvoices, 16, func(i int) {
			tn, id := tenants[i/pdfInvoices], i%pdfInvoices+1
			status, body, err := httpDo(ctx, http.MethodPost, s.enqueue.url(fmt.Sprintf("/v1/invoices/%d/pdf", id)), tn.host(), tn.Key, nil)
			var res struct {
				TaskID   string `json:"task_id"`
				Existing bool   `json:"existing"`
			}
			if err == nil && status != http.StatusAccepted {
				err = fmt.Errorf("status %d: %s", status, body)
			}
			if err == nil {
				err = json.Unmarshal(body, &res)
			}
			if err == nil && res.Existing {
				err = fmt.Errorf("round %d: got the previous round's task %s back", r, res.TaskID)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				reqErr = fmt.Errorf("pdf %s/%d: %w", tn.Slug, id, err)
				return
			}
			taskOf[res.TaskID] = fmt.Sprintf("%s/%d", tn.ID, id)
		})
		if reqErr != nil {
			t.Fatal(reqErr)
		}
		pdfTasks += len(taskOf)
		s.waitQueue(tasks.QueueDefault, 180*time.Second)
		results := s.completedResults(tasks.QueueDefault)
		for taskID, key := range taskOf {
			raw, ok := results[taskID]
			if !ok {
				t.Fatalf("round %d: pdf task %s (%s) is not among the completed tasks", r, taskID, key)
			}
			var res pdfResult
			if err := json.Unmarshal(raw, &res); err != nil || res.SHA256 == "" {
				t.Fatalf("round %d: task %s result %q: %v", r, taskID, raw, err)
			}
			if shas[key] == nil {
				shas[key] = map[string]bool{}
			}
			shas[key][res.SHA256] = true
		}
		t.Logf("round %d: %d PDF tasks completed (%.1fs since the load started)", r, len(taskOf), time.Since(start).Seconds())
	}
	remindWG.Wait()
	if err, _ := remindErr.Load().(error); err != nil {
		t.Fatal(err)
	}

	// The sweep reminds every tenant's sent invoices: wait until every
	// invoice of every tenant has its reminder recorded as sent.
	wantReminders := pdfInvoices + sweepInvoices
	eventually(t, 180*time.Second, 500*time.Millisecond, "every invoice reminded", func() error {
		for _, tn := range tenants {
			var n int
			err := s.db.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{tn.Schema, "invoice_reminders"}.Sanitize()+` WHERE status = 'sent'`).Scan(&n)
			if err != nil {
				return err
			}
			if n < wantReminders {
				return fmt.Errorf("tenant %s: %d of %d reminders sent", tn.Slug, n, wantReminders)
			}
		}
		return nil
	})
	counts := s.waitDrained(120 * time.Second)
	elapsed := time.Since(start)

	// What ran: every task processed by the two workers.
	t.Logf("load: %d tasks processed in %.1fs (%d PDF renders requested over HTTP in %d rounds), %d failed attempts, %d archived",
		counts.processedTotal, elapsed.Seconds(), pdfTasks, rounds, counts.failedTotal, counts.archived)
	if counts.archived != 0 {
		t.Errorf("%d tasks archived, want 0: %v", counts.archived, s.archivedErrors())
	}
	for _, w := range s.workers {
		t.Logf("%s ran:%s", w.name, summaryText(w.taskSummary()))
	}
	if counts.processedTotal < target {
		t.Errorf("%d tasks processed, want at least %d", counts.processedTotal, target)
	}

	s.checkPDFs(t, tenants, pdfInvoices, shas)
	s.checkReminders(t, tenants, pdfInvoices, sweepInvoices)
	s.checkIdleConnections(t)
	if bouncer {
		s.checkBouncerServers(t)
	}
	for _, w := range s.workers {
		if n := strings.Count(w.logText(), "destroying released connection"); n > 0 {
			t.Errorf("%s destroyed %d released connections it could not prove clean", w.name, n)
		}
	}
}

// waitQueue waits until queue has nothing pending, active, scheduled or
// retrying.
func (s *stack) waitQueue(queue string, timeout time.Duration) {
	s.t.Helper()
	eventually(s.t, timeout, 200*time.Millisecond, "queue "+queue+" drained", func() error {
		info, err := s.inspector.GetQueueInfo(queue)
		if err != nil {
			return err
		}
		if n := info.Pending + info.Active + info.Scheduled + info.Retry; n > 0 {
			return fmt.Errorf("%d pending, %d active, %d scheduled, %d retry", info.Pending, info.Active, info.Scheduled, info.Retry)
		}
		return nil
	})
}

// completedResults returns the result of every completed task of queue.
func (s *stack) completedResults(queue string) map[string][]byte {
	s.t.Helper()
	out := map[string][]byte{}
	for page := 1; ; page++ {
		infos, err := s.inspector.ListCompletedTasks(queue, asynq.Page(page), asynq.PageSize(1000))
		if err != nil {
			s.t.Fatalf("list completed tasks of %s: %v", queue, err)
		}
		for _, ti := range infos {
			out[ti.ID] = ti.Result
		}
		if len(infos) < 1000 {
			return out
		}
	}
}

// archivedErrors lists archived tasks with their last errors (for
// failure messages).
func (s *stack) archivedErrors() []string {
	var out []string
	for _, q := range s.layout().Queues() {
		infos, err := s.inspector.ListArchivedTasks(q, asynq.PageSize(20))
		if err != nil {
			continue
		}
		for _, ti := range infos {
			out = append(out, fmt.Sprintf("%s %s: %s", ti.Type, ti.ID, ti.LastErr))
		}
	}
	return out
}

// markerRE finds every tenant marker in a document's text: the tenant
// name, customer names, line items and notes all carry the tenant's number.
var markerRE = regexp.MustCompile(`(?:Firma|Kunde|Kundenfirma|Leistung|Notiz|Stadt|firma)(\d{2})`)

// markerTenants returns the distinct tenant numbers named in text.
func markerTenants(text string) []int {
	seen := map[int]bool{}
	for _, m := range markerRE.FindAllStringSubmatch(text, -1) {
		n, _ := strconv.Atoi(m[1])
		seen[n] = true
	}
	out := make([]int, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Ints(out)
	return out
}

// checkPDFs checks every tenant's PDF files, their invoice_documents rows
// and the SHA-256 of every render: each file under the tenant's directory
// names only its own tenant and customer (pdftotext), every render of an
// invoice produced the bytes of the final file (the renderer is
// deterministic, so a render from another tenant's rows would differ),
// and no invoice that was never requested has a document.
func (s *stack) checkPDFs(t *testing.T, tenants []tenantRef, pdfInvoices int, shas map[string]map[string]bool) {
	t.Helper()
	ctx := context.Background()
	type job struct {
		tn tenantRef
		id int
	}
	var jobs []job
	for _, tn := range tenants {
		for id := 1; id <= pdfInvoices; id++ {
			jobs = append(jobs, job{tn, id})
		}
		var rows, outside int
		err := s.db.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE invoice_id > $1) FROM `+
			pgx.Identifier{tn.Schema, "invoice_documents"}.Sanitize(), pdfInvoices).Scan(&rows, &outside)
		if err != nil {
			t.Fatalf("count documents of %s: %v", tn.Slug, err)
		}
		if rows != pdfInvoices || outside != 0 {
			t.Errorf("tenant %s: %d invoice_documents rows (%d for invoices never requested), want %d", tn.Slug, rows, outside, pdfInvoices)
		}
		files, _ := filepath.Glob(filepath.Join(s.docsDir, tn.ID, "invoices", "*.pdf"))
		if len(files) != pdfInvoices {
			t.Errorf("tenant %s: %d PDF files, want %d", tn.Slug, len(files), pdfInvoices)
		}
	}
	var mu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf(format, args...))
	}
	parallel(len(jobs), 2, func(i int) {
		j := jobs[i]
		path := filepath.Join(s.docsDir, j.tn.ID, "invoices", fmt.Sprintf("%d.pdf", j.id))
		data, err := os.ReadFile(path)
		if err != nil {
			fail("%s invoice %d: %v", j.tn.Slug, j.id, err)
			return
		}
		sum := sha256.Sum256(data)
		final := hex.EncodeToString(sum[:])
		renders := shas[fmt.Sprintf("%s/%d", j.tn.ID, j.id)]
		if len(renders) != 1 || !renders[final] {
			fail("%s invoice %d: renders produced SHA-256 %v, final file %s", j.tn.Slug, j.id, keys(renders), final)
		}
		var rowSHA string
		err = s.db.QueryRow(ctx, `SELECT sha256 FROM `+pgx.Identifier{j.tn.Schema, "invoice_documents"}.Sanitize()+
			` WHERE invoice_id = $1`, j.id).Scan(&rowSHA)
		if err != nil || rowSHA != final {
			fail("%s invoice %d: invoice_documents sha256 %q (%v), file %s", j.tn.Slug, j.id, rowSHA, err, final)
		}
		out, err := exec.Command("pdftotext", "-enc", "UTF-8", path, "-").Output()
		if err != nil {
			fail("pdftotext %s: %v (apt-get install poppler-utils)", path, err)
			return
		}
		text := string(out)
		if got := markerTenants(text); len(got) != 1 || got[0] != j.tn.N {
			fail("%s invoice %d: PDF names tenants %v, want only %d:\n%s", j.tn.Slug, j.id, got, j.tn.N, text)
			return
		}
		for _, want := range []string{tenantName(j.tn.N), customerName(j.tn.N, j.id%customersPerTenant), fmt.Sprintf("INV-%05d", j.id), lineText(j.tn.N, j.id, 1)} {
			if !strings.Contains(text, want) {
				fail("%s invoice %d: PDF text lacks %q:\n%s", j.tn.Slug, j.id, want, text)
				return
			}
		}
	})
	for i, f := range failures {
		if i == 10 {
			t.Errorf("... and %d more PDF failures", len(failures)-10)
			break
		}
		t.Error(f)
	}
	t.Logf("PDFs: %d files checked with pdftotext, SHA-256 of every render compared", len(jobs))
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkReminders checks every .eml in the workers' outboxes: each was sent
// for a known tenant's invoice (its Message-ID names the task's tenant,
// invoice and day), to that tenant's customer of that invoice, with only
// that tenant's data in its text and attachment; exactly one per invoice
// per day; and invoice_reminders agrees.
func (s *stack) checkReminders(t *testing.T, tenants []tenantRef, pdfInvoices, sweepInvoices int) {
	t.Helper()
	ctx := context.Background()
	mails, err := readOutboxes(s.outboxes...)
	if err != nil {
		t.Fatalf("read outboxes: %v", err)
	}
	byID := map[string]tenantRef{}
	for _, tn := range tenants {
		byID[tn.ID] = tn
	}
	perDay := map[string]int{}
	perInvoice := map[string]int{}
	bad := 0
	report := func(format string, args ...any) {
		bad++
		if bad <= 10 {
			t.Errorf(format, args...)
		}
	}
	for _, m := range mails {
		tn, ok := byID[m.tenantID]
		if !ok {
			report("%s: Message-ID %q names no tenant of this test", m.path, m.messageID)
			continue
		}
		if want := customerEmail(tn.N, int(m.invoiceID)%customersPerTenant); m.to != want {
			report("%s: reminder of %s invoice %d went to %q, want %q", m.path, tn.Slug, m.invoiceID, m.to, want)
		}
		if got := markerTenants(m.subject + "\n" + m.text + "\n" + m.to); len(got) != 1 || got[0] != tn.N {
			report("%s: reminder of %s names tenants %v:\n%s", m.path, tn.Slug, got, m.text)
		}
		if !strings.Contains(m.subject+m.text, fmt.Sprintf("INV-%05d", m.invoiceID)) {
			report("%s: reminder of %s invoice %d does not name INV-%05d", m.path, tn.Slug, m.invoiceID, m.invoiceID)
		}
		for _, p := range m.pdfs {
			sum := sha256.Sum256(p)
			file, err := os.ReadFile(filepath.Join(s.docsDir, tn.ID, "invoices", fmt.Sprintf("%d.pdf", m.invoiceID)))
			fsum := sha256.Sum256(file)
			if err != nil || sum != fsum {
				report("%s: attached PDF of %s invoice %d differs from the tenant's document (%v)", m.path, tn.Slug, m.invoiceID, err)
			}
		}
		perDay[fmt.Sprintf("%s/%d/%s", tn.ID, m.invoiceID, m.day)]++
		perInvoice[fmt.Sprintf("%s/%d", tn.ID, m.invoiceID)]++
	}
	for k, n := range perDay {
		if n != 1 {
			report("reminder %s sent %d times, want once", k, n)
		}
	}
	total := pdfInvoices + sweepInvoices
	for _, tn := range tenants {
		for id := 1; id <= total; id++ {
			if perInvoice[fmt.Sprintf("%s/%d", tn.ID, id)] == 0 {
				report("tenant %s invoice %d: no reminder email", tn.Slug, id)
			}
		}
		rows, err := s.db.Query(ctx, `SELECT invoice_id, recipient, status FROM `+pgx.Identifier{tn.Schema, "invoice_reminders"}.Sanitize())
		if err != nil {
			t.Fatalf("reminders of %s: %v", tn.Slug, err)
		}
		n := 0
		for rows.Next() {
			var id int64
			var recipient, status string
			if err := rows.Scan(&id, &recipient, &status); err != nil {
				t.Fatal(err)
			}
			n++
			if want := customerEmail(tn.N, int(id)%customersPerTenant); recipient != want || status != "sent" {
				report("tenant %s invoice %d: reminder row %q %s, want %q sent", tn.Slug, id, recipient, status, want)
			}
		}
		rows.Close()
		if n < total {
			report("tenant %s: %d reminder rows, want %d", tn.Slug, n, total)
		}
	}
	if bad > 10 {
		t.Errorf("... %d reminder failures in all", bad)
	}
	t.Logf("reminders: %d emails checked (%d tenants x %d invoices)", len(mails), len(tenants), total)
}

// checkIdleConnections checks that no session on the app database sits in
// an open transaction once the load is over: a transaction left open would
// keep its SET LOCAL search_path.
func (s *stack) checkIdleConnections(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	eventually(t, 30*time.Second, 200*time.Millisecond, "no open transactions", func() error {
		rows, err := s.db.Query(ctx, `SELECT pid, state, left(query, 80) FROM pg_catalog.pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'`)
		if err != nil {
			return err
		}
		defer rows.Close()
		var open []string
		for rows.Next() {
			var pid int
			var state, query string
			if err := rows.Scan(&pid, &state, &query); err != nil {
				return err
			}
			open = append(open, fmt.Sprintf("%d %s %q", pid, state, query))
		}
		if len(open) > 0 {
			return fmt.Errorf("sessions in a transaction: %v", open)
		}
		return rows.Err()
	})
}

// checkBouncerServers holds as many transactions through PgBouncer as it
// has server connections, so that each runs on a different one, and checks
// that every server connection the workers used has an empty search_path:
// PgBouncer (transaction mode, no reset query) hands server connections
// from client to client as they are, so a leaked pin would show here.
func (s *stack) checkBouncerServers(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	name := databaseName(t, s.directURL)
	before, err := s.bouncer.servers(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	n := s.bouncer.poolSize
	type seen struct {
		pid  int
		path string
	}
	results := make([]seen, n)
	errs := make([]error, n)
	var ready, release sync.WaitGroup
	ready.Add(n)
	release.Add(1)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			conn, err := pgx.Connect(ctx, s.bouncer.url(name))
			if err != nil {
				errs[i] = err
				ready.Done()
				return
			}
			defer conn.Close(ctx)
			tx, err := conn.Begin(ctx)
			if err == nil {
				err = tx.QueryRow(ctx, "SELECT pg_backend_pid(), current_setting('search_path')").Scan(&results[i].pid, &results[i].path)
			}
			errs[i] = err
			ready.Done()
			release.Wait()
			if tx != nil {
				_ = tx.Rollback(ctx)
			}
		})
	}
	ready.Wait()
	release.Done()
	wg.Wait()
	pids := map[int]bool{}
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("transaction %d through pgbouncer: %v", i, errs[i])
		}
		pids[r.pid] = true
		if r.path != `""` && r.path != "" {
			t.Errorf("PgBouncer server connection (backend %d) has search_path %q after the load, want empty", r.pid, r.path)
		}
	}
	for _, pid := range before {
		if !pids[pid] {
			t.Errorf("server connection %d that PgBouncer held after the load was not checked (checked %v)", pid, keysInt(pids))
		}
	}
	t.Logf("PgBouncer: %d server connections checked after the load (held before the check: %v), all with an empty search_path", len(pids), before)
}

func keysInt(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}
