package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestStory walks the whole story of the enqueue service as an app and an
// operator would, against the built cmd/worker and cmd/enqueue running as
// processes on a real Redis and a real PostgreSQL: provision two tenants
// over HTTP, seed their schemas, render and download each tenant's invoice
// 1 through its own subdomain, check that neither tenant can reach the
// other, delete one and watch its schema, documents, catalog row and routes
// go while the other keeps working, open the dashboard, migrate every
// tenant with the CLI, and shut both processes down. Both processes, and
// the story's own queries, log in as production's role does: one that owns
// the database and is not superuser (testenv.PostgresAs).
func TestStory(t *testing.T) {
	t.Parallel()
	s := setupStory(t)

	acme := &storyTenant{
		slug: "acme", name: "Acme Corporation",
		invoices: map[int64]storyInvoice{
			1: {
				number: "ACME-2026-0001", currency: "EUR", customer: "Wile E. Coyote",
				company: "Coyote Desert Supplies", email: "wile@coyote.example",
				lines: []storyLine{
					{"Rocket-powered roller skates", "2", "149.99"},
					{"Giant electromagnet", "1", "1000.00"},
				},
				total: "EUR 1,299.98",
			},
			2: {
				number: "ACME-2026-0002", currency: "EUR", customer: "Wile E. Coyote",
				company: "Coyote Desert Supplies", email: "wile@coyote.example",
				lines: []storyLine{{"Anvil, extra heavy", "1", "75.50"}},
				total: "EUR 75.50",
			},
		},
	}
	globex := &storyTenant{
		slug: "globex", name: "Globex Corporation",
		invoices: map[int64]storyInvoice{
			1: {
				number: "GLOBEX-0001", currency: "USD", customer: "Hank Scorpio",
				company: "Cypress Creek Ventures", email: "hank@cypress.example",
				lines: []storyLine{
					{"Doomsday device maintenance", "3", "14000.10"},
					{"Hammock", "1", "0.20"},
				},
				total: "USD 42,000.50",
			},
		},
	}

	s.step("provision acme and globex over HTTP", func(t *testing.T) {
		for _, tn := range []*storyTenant{acme, globex} {
			s.provision(t, tn)
		}
		for _, tn := range []*storyTenant{acme, globex} {
			s.waitActive(t, tn)
		}
		if acme.Schema == globex.Schema || acme.ID == globex.ID {
			t.Fatalf("tenants share an id or schema: %+v / %+v", acme.Tenant, globex.Tenant)
		}
	})

	s.step("insert customers, invoices and line items in each schema", func(t *testing.T) {
		s.seed(t, acme, 1, 2)
		s.seed(t, globex, 1)
	})

	acmeTask, globexTask := "", ""
	s.step("render and download invoice 1 of each tenant through its subdomain", func(t *testing.T) {
		acmeTask = s.requestPDF(t, acme, 1)
		globexTask = s.requestPDF(t, globex, 1)
		s.waitTaskCompleted(t, acme, acmeTask, "invoice:pdf")
		s.waitTaskCompleted(t, globex, globexTask, "invoice:pdf")
		acmeETag := s.checkPDF(t, acme, 1, globex)
		globexETag := s.checkPDF(t, globex, 1, acme)
		if acmeETag == globexETag {
			t.Errorf("invoice 1 of acme and of globex have the same ETag %s", acmeETag)
		}
	})

	s.step("neither tenant reaches the other", func(t *testing.T) {
		c := s.client
		acmeKey, globexKey := storyBearer(acme.key), storyBearer(globex.key)
		// acme's key on globex's host.
		c.expect(t, http.StatusForbidden, "POST", "/v1/invoices/1/pdf", globex.host, acmeKey, nil)
		c.expect(t, http.StatusForbidden, "GET", "/v1/invoices/1/pdf", globex.host, acmeKey, nil)
		c.expect(t, http.StatusForbidden, "GET", "/v1/tasks/"+globexTask, globex.host, acmeKey, nil)
		// A task id of the other tenant, with the right key on the right host.
		c.expect(t, http.StatusNotFound, "GET", "/v1/tasks/"+acmeTask, globex.host, globexKey, nil)
		c.expect(t, http.StatusNotFound, "GET", "/v1/tasks/"+globexTask, acme.host, acmeKey, nil)
		// No key, and an unknown subdomain.
		c.expect(t, http.StatusUnauthorized, "GET", "/v1/invoices/1/pdf", acme.host, "", nil)
		c.expect(t, http.StatusNotFound, "GET", "/v1/invoices/1/pdf", c.host("initech.localhost"), acmeKey, nil)
	})

	s.step("delete globex: routes gone at once, schema, documents and catalog row gone eventually, audit kept", func(t *testing.T) {
		s.deleteTenant(t, globex, globexTask)
	})

	s.step("acme keeps working after globex is gone", func(t *testing.T) {
		// Its first PDF is still there, and a new render completes.
		s.checkPDF(t, acme, 1, globex)
		task := s.requestPDF(t, acme, 2)
		s.waitTaskCompleted(t, acme, task, "invoice:pdf")
		s.checkPDF(t, acme, 2, globex)
		if _, err := os.Stat(filepath.Join(s.docsDir, acme.ID)); err != nil {
			t.Errorf("acme's documents directory after globex's deletion: %v", err)
		}
	})

	s.step("dashboard: 401 without auth, 200 with basic auth", func(t *testing.T) {
		c := s.client
		const path = "/admin/dashboard/"
		r := c.expect(t, http.StatusUnauthorized, "GET", path, "", "", nil)
		if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic") {
			t.Errorf("dashboard 401 WWW-Authenticate = %q, want a Basic challenge so browsers prompt", got)
		}
		c.expect(t, http.StatusUnauthorized, "GET", path, "", storyBasic("ops", "not-the-token"), nil)
		r = c.expect(t, http.StatusOK, "GET", path, "", storyBasic("ops", s.adminToken), nil)
		if !bytes.Contains(bytes.ToLower(r.body), []byte("<html")) {
			t.Errorf("dashboard with basic auth: 200 but no HTML page: %.300s", r.body)
		}
		// Any user name, and on a tenant's host too (admin routes answer on any Host).
		c.expect(t, http.StatusOK, "GET", path, acme.host, storyBasic("someone-else", s.adminToken), nil)
	})

	s.step("enqueue migrate --all --wait", func(t *testing.T) {
		s.migrateAll(t, acme)
	})

	s.step("both processes shut down cleanly on SIGTERM", func(t *testing.T) {
		for _, p := range []*proc{s.enqueue, s.worker} {
			if err := storyStop(p, storyStopTimeout); err != nil {
				t.Errorf("%s: SIGTERM: %v", p.name, err)
			}
		}
		s.checkLogs(t, acme)
	})
}

// story is what every step of TestStory shares.
type story struct {
	t          *testing.T
	client     *storyClient
	worker     *proc
	enqueue    *proc
	enqueueBin string
	env        map[string]string // the environment both processes share
	pool       *pgxpool.Pool     // schema.NewPool on the test database
	adminToken string
	docsDir    string
}

// storyTenant is one tenant of the story: its catalog record (from the
// admin API), its API key and Host, and the invoices seeded into it.
type storyTenant struct {
	tenantctx.Tenant
	slug, name string
	key        string
	host       string // "<slug>.localhost:<port>"
	invoices   map[int64]storyInvoice
}

// storyInvoice is a seeded invoice and what its PDF must show.
type storyInvoice struct {
	number, currency         string
	customer, company, email string
	lines                    []storyLine
	total                    string // as the PDF prints it (pdf.FormatMoney)
}

// storyLine is a line item; quantity and price are exact decimal strings.
type storyLine struct{ description, quantity, unitPrice string }

// setupStory builds both binaries, starts the services and both processes,
// and waits until both are ready.
func setupStory(t *testing.T) *story {
	t.Helper()
	workerBin := testenv.BuildBinary(t, "github.com/invoicing/tenantworker/cmd/worker")
	enqueueBin := testenv.BuildBinary(t, "github.com/invoicing/tenantworker/cmd/enqueue")
	dbURL := testenv.PostgresAs(t, true)
	if testenv.IsSuperuser(t, dbURL) {
		t.Fatal("testenv.PostgresAs gave a superuser: the story would not run as production's role")
	}
	redisURL := testenv.RedisURL(t)

	dir := t.TempDir()
	s := &story{
		t:          t,
		enqueueBin: enqueueBin,
		adminToken: "story-admin-" + rand.Text(),
		docsDir:    filepath.Join(dir, "documents"),
	}
	s.env = map[string]string{
		"DATABASE_URL":       dbURL,
		"REDIS_URL":          redisURL,
		"ADMIN_TOKEN":        s.adminToken,
		"DOMAIN_SUFFIX":      ".localhost",
		"DOCUMENTS_DIR":      s.docsDir,
		"OUTBOX_DIR":         filepath.Join(dir, "outbox"),
		"LOG_FORMAT":         "json",
		"WORKER_CONCURRENCY": "3",
		"SHUTDOWN_TIMEOUT":   "10s",
	}
	// startProc gives each process its own free HTTP_ADDR and kills it
	// (SIGKILL) in t.Cleanup. The cleanup registered after it runs first:
	// a process still running then (a step failed) gets SIGTERM first, so
	// its log shows the graceful shutdown too.
	s.worker = startProc(t, "worker", workerBin, s.env)
	s.enqueue = startProc(t, "enqueue", enqueueBin, s.env, "serve")
	t.Cleanup(func() {
		for _, p := range []*proc{s.enqueue, s.worker} {
			if p.running() {
				if err := storyStop(p, storyStopTimeout); err != nil {
					t.Errorf("%s: stop in cleanup: %v", p.name, err)
				}
			}
		}
	})
	s.worker.waitReady()
	s.enqueue.waitReady()
	s.client = newStoryClient(s.enqueue.addr)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := schema.NewPool(ctx, dbURL, schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatalf("test pool: %v", err)
	}
	t.Cleanup(pool.Close)
	s.pool = pool
	return s
}

// step runs fn as a subtest and stops the story when it fails: every step
// builds on the ones before.
func (s *story) step(name string, fn func(t *testing.T)) {
	s.t.Helper()
	if !s.t.Run(name, fn) {
		s.t.FailNow()
	}
}

// wait polls cond with eventually until it returns nil, for up to
// storyEventually. It fails the test with cond's last error on timeout, at
// once when cond's error wraps errStoryGiveUp, and at once when the worker
// or the enqueue service has exited.
func (s *story) wait(t *testing.T, what string, cond func() error) {
	t.Helper()
	eventually(t, storyEventually, storyPollInterval, what, func() error {
		t.Helper()
		for _, p := range []*proc{s.worker, s.enqueue} {
			if !p.running() {
				t.Fatalf("%s: %s exited unexpectedly (%v); last log lines:\n%s", what, p.name, p.exitErr(), p.logTail(4<<10))
			}
		}
		err := cond()
		if errors.Is(err, errStoryGiveUp) {
			t.Fatalf("%s: %v", what, err)
		}
		return err
	})
}

func (s *story) admin() string { return storyBearer(s.adminToken) }

// provision creates tn with POST /admin/tenants.
func (s *story) provision(t *testing.T, tn *storyTenant) {
	t.Helper()
	r := s.client.expect(t, http.StatusAccepted, "POST", "/admin/tenants", "", s.admin(),
		map[string]string{"slug": tn.slug, "name": tn.name, "plan": "pro"})
	var body struct {
		ID     string `json:"id"`
		Slug   string `json:"slug"`
		Status string `json:"status"`
		APIKey string `json:"api_key"`
	}
	r.decode(t, "POST /admin/tenants "+tn.slug, &body)
	if body.ID == "" || body.APIKey == "" || body.Slug != tn.slug || body.Status != "provisioning" {
		t.Fatalf("POST /admin/tenants %s: got %s; want an id, slug %q, status provisioning and an api_key", tn.slug, r, tn.slug)
	}
	tn.ID, tn.key = body.ID, body.APIKey
	tn.host = s.client.host(tn.slug + ".localhost")
}

// waitActive polls GET /admin/tenants/{id} until tn is active (its
// tenant:migrate ran in the worker) and keeps the catalog record.
func (s *story) waitActive(t *testing.T, tn *storyTenant) {
	t.Helper()
	s.wait(t, "tenant "+tn.slug+" active", func() error {
		r, err := s.client.send("GET", "/admin/tenants/"+tn.ID, "", s.admin(), nil)
		if err != nil {
			return err
		}
		if r.status != http.StatusOK {
			return fmt.Errorf("%w: GET /admin/tenants/%s: %s", errStoryGiveUp, tn.ID, r)
		}
		var got tenantctx.Tenant
		if err := json.Unmarshal(r.body, &got); err != nil {
			return fmt.Errorf("%w: GET /admin/tenants/%s: %v: %s", errStoryGiveUp, tn.ID, err, r.body)
		}
		switch got.Status {
		case tenantctx.StatusActive:
		case tenantctx.StatusProvisioning:
			return fmt.Errorf("still %s", got.Status)
		default:
			return fmt.Errorf("%w: status %s, want provisioning then active", errStoryGiveUp, got.Status)
		}
		if got.ID != tn.ID || got.Slug != tn.slug || got.Name != tn.name || got.Schema != tenantctx.SchemaForSlug(tn.slug) {
			return fmt.Errorf("%w: GET /admin/tenants/%s = %s", errStoryGiveUp, tn.ID, r)
		}
		tn.Tenant = got
		return nil
	})
}

// seed inserts a customer per invoice, the invoices with the given ids
// (explicit, so both tenants have an invoice 1) and their line items, in
// tn's schema through schema.InTenant and the fixture builder
// invoice.Create, as the invoicing app would.
func (s *story) seed(t *testing.T, tn *storyTenant, ids ...int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tenantctx.WithTenant(context.Background(), tn.Tenant), 30*time.Second)
	defer cancel()
	issued := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	var invs []invoice.New
	for _, id := range ids {
		inv := tn.invoices[id]
		lines := make([]invoice.Line, len(inv.lines))
		for i, l := range inv.lines {
			lines[i] = invoice.Line{Description: l.description,
				Quantity: decimal.RequireFromString(l.quantity), UnitPrice: decimal.RequireFromString(l.unitPrice)}
		}
		invs = append(invs, invoice.New{
			ID: id, Number: inv.number, Status: "sent", Currency: inv.currency,
			Customer: invoice.Customer{Name: inv.customer, Company: inv.company, Email: inv.email, Address: "1 Desert Road\nNowhere"},
			IssuedAt: issued, DueAt: issued.AddDate(0, 0, 30), Lines: lines,
		})
	}
	err := schema.InTenant(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		_, err := invoice.Create(ctx, tx, invs...)
		return err
	})
	if err != nil {
		t.Fatalf("seed tenant %s: %v", tn.slug, err)
	}
}

// requestPDF asks for a render of invoice id through tn's subdomain and
// returns the task id.
func (s *story) requestPDF(t *testing.T, tn *storyTenant, id int64) string {
	t.Helper()
	path := "/v1/invoices/" + strconv.FormatInt(id, 10) + "/pdf"
	r := s.client.expect(t, http.StatusAccepted, "POST", path, tn.host, storyBearer(tn.key), nil)
	var body struct {
		TaskID string `json:"task_id"`
		Queue  string `json:"queue"`
		State  string `json:"state"`
	}
	r.decode(t, "POST "+path+" on "+tn.host, &body)
	if body.TaskID == "" || body.Queue == "" || body.State == "" {
		t.Fatalf("POST %s on %s: got %s; want task_id, queue and state", path, tn.host, r)
	}
	return body.TaskID
}

// waitTaskCompleted polls GET /v1/tasks/{id} on tn's host until the task
// completed; an archived task fails at once with its last error.
func (s *story) waitTaskCompleted(t *testing.T, tn *storyTenant, taskID, wantType string) {
	t.Helper()
	path := "/v1/tasks/" + taskID
	s.wait(t, "task "+taskID+" of "+tn.slug+" completed", func() error {
		r, err := s.client.send("GET", path, tn.host, storyBearer(tn.key), nil)
		if err != nil {
			return err
		}
		if r.status != http.StatusOK {
			return fmt.Errorf("%w: GET %s on %s: %s", errStoryGiveUp, path, tn.host, r)
		}
		var body struct {
			TaskID    string `json:"task_id"`
			Type      string `json:"type"`
			State     string `json:"state"`
			Retried   int    `json:"retried"`
			LastError string `json:"last_error"`
		}
		if err := json.Unmarshal(r.body, &body); err != nil {
			return fmt.Errorf("%w: GET %s: %v: %s", errStoryGiveUp, path, err, r.body)
		}
		if body.TaskID != taskID || body.Type != wantType {
			return fmt.Errorf("%w: GET %s: %s; want task_id %s of type %s", errStoryGiveUp, path, r, taskID, wantType)
		}
		switch body.State {
		case "completed":
			return nil
		case "archived":
			return fmt.Errorf("%w: task archived after %d retries: %s", errStoryGiveUp, body.Retried, body.LastError)
		}
		return fmt.Errorf("state %s (retried %d, last error %q)", body.State, body.Retried, body.LastError)
	})
}

// checkPDF downloads invoice id of tn through its subdomain, checks the
// headers and that the text shows tn's customer, total and name and
// nothing of other's invoice 1, and returns the ETag.
func (s *story) checkPDF(t *testing.T, tn *storyTenant, id int64, other *storyTenant) string {
	t.Helper()
	path := "/v1/invoices/" + strconv.FormatInt(id, 10) + "/pdf"
	key := storyBearer(tn.key)
	r := s.client.expect(t, http.StatusOK, "GET", path, tn.host, key, nil)
	what := fmt.Sprintf("GET %s on %s", path, tn.host)
	if ct := r.header.Get("Content-Type"); ct != "application/pdf" {
		t.Errorf("%s: Content-Type %q, want application/pdf", what, ct)
	}
	if !bytes.HasPrefix(r.body, []byte("%PDF-")) {
		t.Fatalf("%s: body does not start with %%PDF-: %.40q", what, r.body)
	}
	sum := sha256.Sum256(r.body)
	etag := r.header.Get("ETag")
	if want := `"` + hex.EncodeToString(sum[:]) + `"`; etag != want {
		t.Errorf("%s: ETag %s, want the body's SHA-256 %s", what, etag, want)
	}
	inv := tn.invoices[id]
	if cd := r.header.Get("Content-Disposition"); !strings.Contains(cd, inv.number) {
		t.Errorf("%s: Content-Disposition %q does not name invoice %s", what, cd, inv.number)
	}

	// Conditional GET with the ETag: 304.
	req, err := http.NewRequest("GET", "http://"+s.client.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = tn.host
	req.Header.Set("Authorization", key)
	req.Header.Set("If-None-Match", etag)
	resp, err := s.client.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("%s with If-None-Match %s: status %d, want 304", what, etag, resp.StatusCode)
	}

	text := storyPDFText(t, fmt.Sprintf("%s-%d", tn.slug, id), r.body)
	for _, want := range []string{inv.customer, inv.total, inv.number, tn.name} {
		if !strings.Contains(text, want) {
			t.Errorf("%s: PDF text lacks %q; text:\n%s", what, want, text)
		}
	}
	theirs := other.invoices[1]
	for _, leak := range []string{theirs.customer, theirs.company, theirs.total, theirs.number, other.name} {
		if strings.Contains(text, leak) {
			t.Errorf("%s: PDF of %s shows %q of tenant %s; text:\n%s", what, tn.slug, leak, other.slug, text)
		}
	}
	return etag
}

// deleteTenant deletes tn over the admin API and checks what goes at once
// (its routes) and eventually (schema, documents, catalog row and keys),
// and what stays (the audit entry, without personal data).
func (s *story) deleteTenant(t *testing.T, tn *storyTenant, taskID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*storyEventually)
	defer cancel()
	docs := filepath.Join(s.docsDir, tn.ID)
	if entries, err := os.ReadDir(docs); err != nil || len(entries) == 0 {
		t.Fatalf("before deleting %s: its documents directory %s should hold the rendered PDF: %v (%d entries)", tn.slug, docs, err, len(entries))
	}
	if !s.schemaExists(t, ctx, tn.Schema) {
		t.Fatalf("before deleting %s: schema %s does not exist", tn.slug, tn.Schema)
	}

	r := s.client.expect(t, http.StatusAccepted, "DELETE", "/admin/tenants/"+tn.ID, "", s.admin(), nil)
	var body struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	r.decode(t, "DELETE /admin/tenants/"+tn.ID, &body)
	if body.ID != tn.ID || body.Status != string(tenantctx.StatusDeleting) {
		t.Errorf("DELETE /admin/tenants/%s: %s; want id %s, status deleting", tn.ID, r, tn.ID)
	}

	// At once: every tenant route of the deleted tenant is refused with its
	// own key: 404 "unknown tenant" while it is being deleted, 401 once its
	// destroy (which may already have run) revoked the key.
	key := storyBearer(tn.key)
	for _, rt := range [][2]string{
		{"GET", "/v1/invoices/1/pdf"},
		{"POST", "/v1/invoices/1/pdf"},
		{"POST", "/v1/invoices/1/reminders"},
		{"GET", "/v1/tasks/" + taskID},
	} {
		r := s.client.do(t, rt[0], rt[1], tn.host, key, nil)
		if r.status != http.StatusNotFound && r.status != http.StatusUnauthorized {
			t.Fatalf("%s %s of the deleted tenant: got %s, want 404 (being deleted) or 401 (destroyed: key revoked)", rt[0], rt[1], r)
		}
	}

	// Eventually: tenant:destroy erased the schema, the documents and the
	// catalog row.
	s.wait(t, "tenant "+tn.slug+" destroyed", func() error {
		var left []string
		if s.schemaExists(t, ctx, tn.Schema) {
			left = append(left, "schema "+tn.Schema+" exists")
		}
		if _, err := os.Stat(docs); !errors.Is(err, os.ErrNotExist) {
			left = append(left, fmt.Sprintf("documents directory %s: stat: %v", docs, err))
		}
		r, err := s.client.send("GET", "/admin/tenants/"+tn.ID, "", s.admin(), nil)
		if err != nil {
			return err
		}
		if r.status != http.StatusNotFound {
			left = append(left, "GET /admin/tenants/"+tn.ID+": "+r.String())
		}
		if len(left) > 0 {
			return errors.New(strings.Join(left, "; "))
		}
		return nil
	})

	var rows, keys int
	err := s.pool.QueryRow(ctx,
		`SELECT (SELECT count(*) FROM tenancy.tenants WHERE id = $1),
		        (SELECT count(*) FROM tenancy.api_keys WHERE tenant_id = $1)`, tn.ID).Scan(&rows, &keys)
	if err != nil {
		t.Fatalf("count catalog rows of %s: %v", tn.ID, err)
	}
	if rows != 0 || keys != 0 {
		t.Errorf("after destroy: %d tenancy.tenants rows and %d tenancy.api_keys rows of %s remain, want 0 and 0", rows, keys, tn.ID)
	}
	// Once the row and its keys are gone, its old key is refused as any
	// unknown key is (401), before the subdomain says anything.
	s.client.expect(t, http.StatusUnauthorized, "GET", "/v1/invoices/1/pdf", tn.host, key, nil)

	// The audit log keeps the deletion, and no personal data.
	qrows, err := s.pool.Query(ctx,
		`SELECT action, coalesce(detail::text, '') FROM tenancy.audit_log WHERE tenant_id = $1 ORDER BY id`, tn.ID)
	if err != nil {
		t.Fatalf("read audit log of %s: %v", tn.ID, err)
	}
	type entry struct{ action, detail string }
	entries, err := pgx.CollectRows(qrows, func(row pgx.CollectableRow) (entry, error) {
		var e entry
		err := row.Scan(&e.action, &e.detail)
		return e, err
	})
	if err != nil {
		t.Fatalf("read audit log of %s: %v", tn.ID, err)
	}
	t.Logf("audit log of %s after deletion: %v", tn.slug, entries)
	for _, action := range []tenancy.Action{tenancy.ActionDeletionRequested, tenancy.ActionDeletionCompleted} {
		if n := len(slices.DeleteFunc(slices.Clone(entries), func(e entry) bool { return e.action != string(action) })); n != 1 {
			t.Errorf("audit log of deleted tenant %s has %d %s entries, want 1: %v", tn.ID, n, action, entries)
		}
	}
	inv := tn.invoices[1]
	for _, e := range entries {
		for _, pii := range []string{inv.customer, inv.email, inv.company} {
			if strings.Contains(e.detail, pii) {
				t.Errorf("audit entry %s of %s holds personal data %q: %s", e.action, tn.ID, pii, e.detail)
			}
		}
	}
}

// schemaExists reports whether a schema named name exists.
func (s *story) schemaExists(t *testing.T, ctx context.Context, name string) bool {
	t.Helper()
	var ok bool
	err := s.pool.QueryRow(ctx,
		`SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)`, name).Scan(&ok)
	if err != nil {
		t.Fatalf("look up schema %s: %v", name, err)
	}
	return ok
}

// migrateAll runs "enqueue migrate --all --wait" as an operator would and
// expects every remaining tenant (only tn) migrated.
func (s *story) migrateAll(t *testing.T, tn *storyTenant) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*storyEventually)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.enqueueBin, "migrate", "--all", "--wait", "--timeout", storyEventually.String())
	// The environment the processes get, without HTTP_ADDR: the CLI
	// serves nothing.
	cmd.Env = (&proc{env: s.env}).environ()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := fmt.Sprintf("stdout:\n%s\nstderr (last 4 KiB):\n%s", stdout.String(), storyTail(stderr.String(), 4<<10))
	if err != nil {
		t.Fatalf("enqueue migrate --all --wait: %v\n%s", err, out)
	}
	t.Logf("enqueue migrate --all --wait:\n%s", stdout.String())
	for _, want := range []string{"enqueued 1 tenant migrations", "1/0/1 done/failed/total"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("enqueue migrate --all --wait: output lacks %q (only %s remains)\n%s", want, tn.slug, out)
		}
	}
	r := s.client.expect(t, http.StatusOK, "GET", "/admin/tenants/"+tn.ID, "", s.admin(), nil)
	var got tenantctx.Tenant
	r.decode(t, "GET /admin/tenants/"+tn.ID, &got)
	if got.Status != tenantctx.StatusActive {
		t.Errorf("after migrate --all: %s is %s, want active", tn.slug, got.Status)
	}
}

// checkLogs checks what an operator reads: with LOG_FORMAT=json every line
// of both processes is a JSON object, and task and request lines carry the
// tenant_id.
func (s *story) checkLogs(t *testing.T, tn *storyTenant) {
	t.Helper()
	for _, p := range []*proc{s.worker, s.enqueue} {
		sawTenant := false
		sc := bufio.NewScanner(strings.NewReader(p.logText()))
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for n := 1; sc.Scan(); n++ {
			line := sc.Bytes()
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			// The harness's own marker of each start (proc.start), not the
			// process's output.
			if bytes.HasPrefix(line, []byte("=== harness: start #")) {
				continue
			}
			var rec map[string]any
			if err := json.Unmarshal(line, &rec); err != nil {
				t.Errorf("%s log line %d is not JSON with LOG_FORMAT=json: %.300s", p.name, n, line)
				continue
			}
			if rec["tenant_id"] == tn.ID {
				sawTenant = true
			}
		}
		if err := sc.Err(); err != nil {
			t.Errorf("read %s log: %v", p.name, err)
		}
		if !sawTenant {
			t.Errorf("%s log has no line with tenant_id %q of %s", p.name, tn.ID, tn.slug)
		}
	}
}

func storyTail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
