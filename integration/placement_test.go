package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tasks"
)

// placed is a tenant of the placement test with the database it is on.
type placed struct {
	tenantRef
	db string
}

// provisionOnMainAndSecond provisions firma-00 on the database main and
// firma-01 on second (a registered tenant database) through the admin
// API, in that order.
func (s *stack) provisionOnMainAndSecond() []placed {
	s.t.Helper()
	var tenants []placed
	for i, db := range []string{"main", "second"} {
		slug := fmt.Sprintf("firma-%02d", i)
		status, body := s.api(http.MethodPost, "/admin/tenants", "", adminToken,
			map[string]string{"slug": slug, "name": tenantName(i), "database": db})
		var r struct {
			ID     string
			APIKey string `json:"api_key"`
		}
		if status != http.StatusAccepted || json.Unmarshal(body, &r) != nil {
			s.t.Fatalf("provision %s: status %d, body %s", slug, status, body)
		}
		tenants = append(tenants, placed{tenantRef{ID: r.ID, Slug: slug, Schema: "tenant_" + strings.ReplaceAll(slug, "-", "_"), Name: tenantName(i), Key: r.APIKey, N: i}, db})
	}
	return tenants
}

// TestTenantsAcrossServers runs the binaries with two PostgreSQL servers
// ("main" and "second", TENANT_DATABASES) and a Redis Cluster (3 masters,
// 3 replicas) for the queues, both ways of scaling out at once: tenants
// placed on both (by the
// operator's choice and by load) get their PDFs rendered and their overdue
// invoices swept and reminded, each from its own server, with the same
// invoice ids on both and only its own data in every PDF and email; then
// `enqueue tenant move` moves a tenant from main to second while its
// renders are queued: nothing is lost, the tasks run on the new server,
// the old schema is gone. It runs within one UTC day (testenv.OneUTCDay):
// it counts one reminder per invoice, and on the next day the sweep
// reminds every overdue invoice again.
func TestTenantsAcrossServers(t *testing.T) {
	t.Parallel()
	testenv.OneUTCDay(t, 5*time.Minute)
	const overdue, sent = 4, 4
	secondURL := testenv.StartPostgres(t).CreateDatabase(t)
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{})
	s := newStack(t, stackOptions{workers: 2, concurrency: 4, sweepCron: "@every 2s", cluster: c,
		env: map[string]string{"TENANT_DATABASES": "second=" + secondURL, "TENANT_DB_MAX_CONNS": "4"}})
	ctx := context.Background()
	second, err := pgxpool.New(ctx, secondURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Close)
	poolOf := func(db string) *pgxpool.Pool {
		if db == "second" {
			return second
		}
		return s.db
	}

	// firma-00 on main and firma-01 on second by choice; firma-02 and
	// firma-03 by load (one each).
	var tenants []placed
	for i, want := range []string{"main", "second", "", ""} {
		slug := fmt.Sprintf("firma-%02d", i)
		status, body := s.api(http.MethodPost, "/admin/tenants", "", adminToken,
			map[string]string{"slug": slug, "name": tenantName(i), "database": want})
		var r struct {
			ID, Slug, Database string
			APIKey             string `json:"api_key"`
		}
		if status != http.StatusAccepted || json.Unmarshal(body, &r) != nil {
			t.Fatalf("provision %s on %q: status %d, body %s", slug, want, status, body)
		}
		if want != "" && r.Database != want {
			t.Fatalf("provision %s: placed on %q, want %q", slug, r.Database, want)
		}
		tenants = append(tenants, placed{tenantRef{ID: r.ID, Slug: slug, Schema: "tenant_" + strings.ReplaceAll(slug, "-", "_"), Name: tenantName(i), Key: r.APIKey, N: i}, r.Database})
	}
	if tenants[2].db == tenants[3].db {
		t.Errorf("placement by load put firma-02 and firma-03 both on %s", tenants[2].db)
	}
	ids := make([]string, len(tenants))
	for i, tn := range tenants {
		ids[i] = tn.ID
	}
	s.waitStatus(ids, "active", 120*time.Second)
	for _, tn := range tenants {
		s.seedIn(poolOf(tn.db), tn.tenantRef, invoiceSeed{overdue: overdue, sent: sent, lines: 2})
		other := map[string]string{"main": "second", "second": "main"}[tn.db]
		if ok, err := schema.Exists(ctx, poolOf(other), tn.Schema); err != nil || ok {
			t.Errorf("%s has a schema on %s too (%v)", tn.Slug, other, err)
		}
	}

	// PDFs for the same invoice ids on every tenant.
	var pdfTasks []string
	for _, tn := range tenants {
		for id := 1; id <= overdue; id++ {
			pdfTasks = append(pdfTasks, s.mustPost(tn.tenantRef, "pdf", id).TaskID)
		}
	}
	s.waitCompleted(tasks.QueueDefault, pdfTasks, 120*time.Second)
	for _, tn := range tenants {
		checkPDFText(t, s, tn)
	}

	// The sweep marks the sent invoices overdue and reminds every overdue
	// invoice, tenant by tenant, each on its own server.
	eventually(t, 120*time.Second, 500*time.Millisecond, "every invoice reminded", func() error {
		for _, tn := range tenants {
			var n int
			err := poolOf(tn.db).QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{tn.Schema, "invoice_reminders"}.Sanitize()+` WHERE status = 'sent'`).Scan(&n)
			if err != nil {
				return err
			}
			if n < overdue+sent {
				return fmt.Errorf("%s: %d of %d reminders sent", tn.Slug, n, overdue+sent)
			}
		}
		return nil
	})
	mails, err := readOutboxes(s.outboxes...)
	if err != nil {
		t.Fatal(err)
	}
	perTenant := map[string]int{}
	for _, m := range mails {
		for _, tn := range tenants {
			if m.tenantID != tn.ID {
				continue
			}
			perTenant[tn.ID]++
			if got := markerTenants(m.text + " " + m.to); !slices.Equal(got, []int{tn.N}) {
				t.Errorf("reminder %s for %s names tenants %v", m.path, tn.Slug, got)
			}
		}
	}
	for _, tn := range tenants {
		if perTenant[tn.ID] != overdue+sent {
			t.Errorf("%s: %d reminder emails, want %d", tn.Slug, perTenant[tn.ID], overdue+sent)
		}
	}

	// Move firma-00 from main to second while renders of all its invoices
	// wait in its queue.
	mover := tenants[0]
	var queued []string
	for id := 1; id <= overdue+sent; id++ {
		queued = append(queued, s.mustPost(mover.tenantRef, "pdf", id).TaskID)
	}
	cmd := exec.Command(testenv.BuildBinary(t, enqueuePkg), "tenant", "move", mover.Slug, "--to", "second", "--grace", "1s")
	for k, v := range s.env(nil) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("enqueue tenant move: %v\nstdout %s\nstderr %s", err, out.String(), errOut.String())
	}
	var moved struct {
		From, To         string
		Rows             int64
		OldSchemaDropped bool `json:"old_schema_dropped"`
	}
	if err := json.Unmarshal(out.Bytes(), &moved); err != nil || moved.From != "main" || moved.To != "second" || !moved.OldSchemaDropped || moved.Rows == 0 {
		t.Fatalf("enqueue tenant move printed %s (%v)", out.String(), err)
	}
	mover.db = "second"
	for id, ti := range s.waitCompleted(tasks.QueueDefault, queued, 120*time.Second) {
		if ti.Retried != 0 {
			t.Logf("task %s retried %d times after the move (last error %q)", id, ti.Retried, ti.LastErr)
		}
	}
	if ok, err := schema.Exists(ctx, s.db, mover.Schema); err != nil || ok {
		t.Errorf("the old schema of %s is still on main (%v)", mover.Slug, err)
	}
	var rows, distinct int
	err = second.QueryRow(ctx, `SELECT count(*), count(DISTINCT invoice_id) FROM `+pgx.Identifier{mover.Schema, "invoice_documents"}.Sanitize()).Scan(&rows, &distinct)
	if err != nil || distinct != overdue+sent {
		t.Errorf("after the move %s has %d documents for %d invoices on second (%v), want %d invoices", mover.Slug, rows, distinct, err, overdue+sent)
	}
	var reminders int
	if err := second.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{mover.Schema, "invoice_reminders"}.Sanitize()+` WHERE status = 'sent'`).Scan(&reminders); err != nil || reminders != overdue+sent {
		t.Errorf("after the move %s has %d sent reminders on second (%v), want %d", mover.Slug, reminders, err, overdue+sent)
	}
	checkPDFText(t, s, mover)
	counts := s.waitDrained(120 * time.Second)
	if counts.archived != 0 {
		t.Errorf("%d tasks archived: %v", counts.archived, s.archivedErrors())
	}
}

// checkPDFText downloads invoice 1 of tn through the enqueue service and
// checks with pdftotext that it names tn only.
func checkPDFText(t *testing.T, s *stack, tn placed) {
	t.Helper()
	status, body, err := httpDo(context.Background(), http.MethodGet, s.enqueue.url("/v1/invoices/1/pdf"), tn.host(), tn.Key, nil)
	if err != nil || status != http.StatusOK || !bytes.HasPrefix(body, []byte("%PDF")) {
		t.Fatalf("download %s/1 (on %s): status %d, %v", tn.Slug, tn.db, status, err)
	}
	cmd := exec.Command("pdftotext", "-enc", "UTF-8", "-", "-")
	cmd.Stdin = bytes.NewReader(body)
	text, err := cmd.Output()
	if err != nil {
		t.Fatalf("pdftotext (apt-get install poppler-utils): %v", err)
	}
	if got := markerTenants(string(text)); !slices.Equal(got, []int{tn.N}) {
		t.Errorf("PDF of %s/1 (on %s) names tenants %v, want [%d]", tn.Slug, tn.db, got, tn.N)
	}
}

// TestTenantServerStoppedMidLoad stops the second PostgreSQL server while
// renders of a tenant on each server run: only the second server's
// tenant's tasks fail (the other tenant's all complete on their first
// attempt meanwhile, and the processes stay ready: their catalog is on
// main), and they are retried and complete once the server is back.
func TestTenantServerStoppedMidLoad(t *testing.T) {
	t.Parallel()
	// The second tenant has more renders than the workers finish while
	// its server is being stopped, however fast they render.
	const n, nSecond = 150, 1000
	pg := testenv.StartPostgres(t)
	secondURL := pg.CreateDatabase(t)
	// The renders that waited for second come back 1-2 s after an attempt
	// (NOT_READY_DELAY_MIN/_MAX), not 15-30 s, and its breaker probes it
	// at least every 2 s (DB_BREAKER_PROBE_MAX), not 30 s: what the test
	// waits for once second is back.
	s := newStack(t, stackOptions{workers: 2, concurrency: 4,
		env: map[string]string{"TENANT_DATABASES": "second=" + secondURL,
			"NOT_READY_DELAY_MIN": "1s", "NOT_READY_DELAY_MAX": "2s", "DB_BREAKER_PROBE_MAX": "2s"}})
	ctx := context.Background()
	second, err := pgxpool.New(ctx, secondURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Close)
	tenants := s.provisionOnMainAndSecond()
	s.waitStatus([]string{tenants[0].ID, tenants[1].ID}, "active", 120*time.Second)
	s.seedIn(s.db, tenants[0].tenantRef, invoiceSeed{overdue: n, lines: 20})
	s.seedIn(second, tenants[1].tenantRef, invoiceSeed{overdue: nSecond, lines: 20})
	second.Close()

	// The second tenant's renders first, so that the fault hits them.
	var onSecond, onMain []string
	for id := 1; id <= 200; id++ {
		onSecond = append(onSecond, s.mustPost(tenants[1].tenantRef, "pdf", id).TaskID)
	}
	eventually(t, 60*time.Second, 20*time.Millisecond, "first renders on second done", func() error {
		_, states, err := s.taskStates(tasks.QueueDefault, onSecond)
		if err != nil {
			return err
		}
		if states["completed"] < 10 {
			return fmt.Errorf("%d completed", states["completed"])
		}
		return nil
	})
	// No new task starts while the rest is enqueued and the second server
	// stops (the queue is paused in Redis); once it is down, the second
	// tenant's renders fail, however fast the workers render.
	if err := s.inspector.PauseQueue(tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	for id := 201; id <= nSecond; id++ {
		onSecond = append(onSecond, s.mustPost(tenants[1].tenantRef, "pdf", id).TaskID)
	}
	pg.Stop(t)
	if err := s.inspector.UnpauseQueue(tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, 20*time.Millisecond, "renders on second failing", func() error {
		info, err := s.inspector.GetQueueInfo(tasks.QueueDefault)
		if err != nil {
			return err
		}
		if info.Retry == 0 {
			return errNotYet
		}
		return nil
	})
	for id := 1; id <= n; id++ {
		onMain = append(onMain, s.mustPost(tenants[0].tenantRef, "pdf", id).TaskID)
	}
	// While the second server is down: every render of the first tenant
	// completes, first time.
	for id, ti := range s.waitCompleted(tasks.QueueDefault, onMain, 180*time.Second) {
		if ti.Retried != 0 {
			t.Errorf("task %s of the tenant on main retried %d times (last error %q) while only the second server was down", id, ti.Retried, ti.LastErr)
		}
	}
	for _, p := range append([]*proc{s.enqueue}, s.workers...) {
		if err := p.waitStatus("/readyz", http.StatusOK, 60*time.Second); err != nil {
			t.Errorf("%s not ready while only a tenant database is down: %v", p.name, err)
		}
	}
	pg.Start(t)
	retried := 0
	for _, ti := range s.waitCompleted(tasks.QueueDefault, onSecond, 300*time.Second) {
		if ti.Retried > 0 {
			retried++
		}
	}
	// An attempt that found second's server down waited for it without
	// counting a failure (worker.ErrDatabaseUnavailable); only one cut
	// off mid-query by the stop counts.
	waited := 0
	for _, p := range s.workers {
		waited += strings.Count(p.logText(), "unavailable, retried later without counting as a failure")
	}
	if waited == 0 {
		t.Error("no render of the tenant on second waited for its database: the fault did not hit the load")
	}
	t.Logf("renders of the tenant on second: %d attempts waited for its database, %d renders retried after a counted failure", waited, retried)
	second, err = pgxpool.New(ctx, secondURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Close)
	var rows int
	if err := second.QueryRow(ctx, `SELECT count(DISTINCT invoice_id) FROM `+pgx.Identifier{tenants[1].Schema, "invoice_documents"}.Sanitize()).Scan(&rows); err != nil || rows != nSecond {
		t.Errorf("%s has documents for %d invoices on second (%v), want %d", tenants[1].Slug, rows, err, nSecond)
	}
	checkPDFText(t, s, tenants[1])
	t.Logf("second server down: %d of %d renders of its tenant retried, all completed; %d renders of the tenant on main completed meanwhile, none retried", retried, nSecond, n)
}

// TestMoveUnderLoad moves a tenant from main to second while hundreds of
// its renders are queued and running, and another tenant's run
// alongside: the move waits for the running ones, holds the rest, and
// afterwards every render completes (on the new server: a document per
// invoice there) and nothing is archived; the other tenant is not
// affected.
func TestMoveUnderLoad(t *testing.T) {
	t.Parallel()
	const n = 200
	secondURL := testenv.StartPostgres(t).CreateDatabase(t)
	s := newStack(t, stackOptions{workers: 2, concurrency: 4,
		env: map[string]string{"TENANT_DATABASES": "second=" + secondURL}})
	ctx := context.Background()
	second, err := pgxpool.New(ctx, secondURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Close)
	var tenants []placed
	for i := range 2 {
		slug := fmt.Sprintf("firma-%02d", i)
		status, body := s.api(http.MethodPost, "/admin/tenants", "", adminToken,
			map[string]string{"slug": slug, "name": tenantName(i), "database": "main"})
		var r struct {
			ID     string
			APIKey string `json:"api_key"`
		}
		if status != http.StatusAccepted || json.Unmarshal(body, &r) != nil {
			t.Fatalf("provision %s: status %d, body %s", slug, status, body)
		}
		tenants = append(tenants, placed{tenantRef{ID: r.ID, Slug: slug, Schema: "tenant_" + strings.ReplaceAll(slug, "-", "_"), Name: tenantName(i), Key: r.APIKey, N: i}, "main"})
	}
	s.waitStatus([]string{tenants[0].ID, tenants[1].ID}, "active", 120*time.Second)
	for _, tn := range tenants {
		s.seedIn(s.db, tn.tenantRef, invoiceSeed{overdue: n, lines: 20})
	}
	var mover, other []string
	for id := 1; id <= n; id++ {
		mover = append(mover, s.mustPost(tenants[0].tenantRef, "pdf", id).TaskID)
		other = append(other, s.mustPost(tenants[1].tenantRef, "pdf", id).TaskID)
	}
	eventually(t, 60*time.Second, 20*time.Millisecond, "the mover's first renders done", func() error {
		_, states, err := s.taskStates(tasks.QueueDefault, mover)
		if err != nil {
			return err
		}
		if states["completed"] < 5 {
			return fmt.Errorf("%d completed", states["completed"])
		}
		return nil
	})
	_, before, _ := s.taskStates(tasks.QueueDefault, mover)
	cmd := exec.Command(testenv.BuildBinary(t, enqueuePkg), "tenant", "move", tenants[0].Slug, "--to", "second", "--grace", "1s")
	for k, v := range s.env(nil) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("enqueue tenant move: %v\nstdout %s\nstderr %s", err, out.String(), errOut.String())
	}
	tenants[0].db = "second"
	s.waitCompleted(tasks.QueueDefault, mover, 240*time.Second)
	s.waitCompleted(tasks.QueueDefault, other, 240*time.Second)
	var docs int
	if err := second.QueryRow(ctx, `SELECT count(DISTINCT invoice_id) FROM `+pgx.Identifier{tenants[0].Schema, "invoice_documents"}.Sanitize()).Scan(&docs); err != nil || docs != n {
		t.Errorf("after the move the mover has documents for %d invoices on second (%v), want %d", docs, err, n)
	}
	if ok, err := schema.Exists(ctx, s.db, tenants[0].Schema); err != nil || ok {
		t.Errorf("the mover's old schema is still on main (%v)", err)
	}
	if ok, err := schema.Exists(ctx, second, tenants[1].Schema); err != nil || ok {
		t.Errorf("the other tenant has a schema on second (%v)", err)
	}
	checkPDFText(t, s, tenants[0])
	checkPDFText(t, s, tenants[1])
	counts := s.waitDrained(120 * time.Second)
	if counts.archived != 0 {
		t.Errorf("%d tasks archived: %v", counts.archived, s.archivedErrors())
	}
	t.Logf("moved with %d of %d renders completed before the move (%v); all %d completed after it", before["completed"], n, before, n)
}
