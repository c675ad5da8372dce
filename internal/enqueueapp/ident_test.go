package enqueueapp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/workerapp"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// identRig is an enqueue service and a worker, in process, on one
// PostgreSQL and one Redis.
type identRig struct {
	base   string
	dbURL  string
	client *http.Client
}

const identAdmin = "admin-secret-of-at-least-32-characters"

func startIdentRig(t *testing.T, fair bool, extra ...string) *identRig {
	t.Helper()
	vars := map[string]string{
		"DATABASE_URL":       testenv.Postgres(t),
		"REDIS_URL":          testenv.RedisURL(t),
		"DOMAIN_SUFFIX":      ".example.com",
		"ADMIN_TOKEN":        identAdmin,
		"DOCUMENTS_DIR":      t.TempDir(),
		"OUTBOX_DIR":         t.TempDir(),
		"HTTP_ADDR":          "127.0.0.1:0",
		"WORKER_CONCURRENCY": "2",
		"SHUTDOWN_TIMEOUT":   "5s",
		"FAIR_DISPATCH":      fmt.Sprint(fair),
	}
	for i := 0; i+1 < len(extra); i += 2 {
		vars[extra[i]] = extra[i+1]
	}
	cfg, err := config.FromEnv(getenv(vars))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wdone := make(chan error, 1)
	wready := make(chan net.Addr, 1)
	go func() {
		wdone <- workerapp.RunWith(ctx, cfg, quietLogger(), workerapp.Options{Ready: func(a net.Addr) { wready <- a }})
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	edone := make(chan error, 1)
	eready := make(chan net.Addr, 1)
	go func() {
		edone <- enqueueapp.RunWith(ctx, cfg, quietLogger(), enqueueapp.Options{Listener: ln, Ready: func(a net.Addr) { eready <- a }})
	}()
	r := &identRig{dbURL: vars["DATABASE_URL"], client: &http.Client{}}
	for range 2 {
		select {
		case <-wready:
		case a := <-eready:
			r.base = "http://" + a.String()
		case err := <-wdone:
			cancel()
			t.Fatalf("worker exited: %v", err)
		case err := <-edone:
			cancel()
			t.Fatalf("enqueue service exited: %v", err)
		case <-time.After(2 * time.Minute):
			cancel()
			t.Fatal("not ready after 2 minutes")
		}
	}
	t.Cleanup(func() {
		cancel()
		<-wdone
		<-edone
		r.client.CloseIdleConnections()
	})
	return r
}

type identResp struct {
	status int
	header http.Header
	body   []byte
}

func (r *identRig) call(t *testing.T, method, path, host, token, body string, hdr ...string) identResp {
	t.Helper()
	req, err := http.NewRequest(method, r.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return identResp{resp.StatusCode, resp.Header, b}
}

type identTenant struct {
	tenantctx.Tenant
	key string
}

func (tn identTenant) host() string { return tn.Slug + ".example.com" }

// tenant provisions slug, waits until the worker's migration made it
// active and gives it invoices 1..n.
func (r *identRig) tenant(t *testing.T, slug string, n int) identTenant {
	t.Helper()
	res := r.call(t, http.MethodPost, "/admin/tenants", "", identAdmin, `{"slug":"`+slug+`"}`)
	if res.status != http.StatusAccepted {
		t.Fatalf("provision %s: %d %s", slug, res.status, res.body)
	}
	var p struct {
		ID     string `json:"id"`
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal(res.body, &p); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pool, err := schema.NewPool(ctx, r.dbURL, schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	pg := storage.NewPostgres(pool)
	var tn tenantctx.Tenant
	deadline := time.Now().Add(time.Minute)
	for {
		if tn, err = pg.TenantByID(ctx, p.ID); err == nil && tn.Status == tenantctx.StatusActive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenant %s not active: %+v %v", slug, tn, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	invs := make([]invoice.New, n)
	for i := range invs {
		invs[i] = invoice.New{ID: int64(i + 1), Number: fmt.Sprintf("%s-%d", strings.ToUpper(slug), i+1), Status: "sent", Currency: "EUR",
			Customer: invoice.Customer{Name: "Customer", Email: fmt.Sprintf("c%d@%s.example", i, slug)}}
	}
	err = schema.InTenant(tenantctx.WithTenant(ctx, tn), pool, func(ctx context.Context, tx pgx.Tx) error {
		_, err := invoice.Create(ctx, tx, invs...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return identTenant{Tenant: tn, key: p.APIKey}
}

// exec runs sql in the tenant's schema.
func (r *identRig) exec(t *testing.T, tn identTenant, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	pool, err := schema.NewPool(ctx, r.dbURL, schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	err = schema.InTenant(tenantctx.WithTenant(ctx, tn.Tenant), pool, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, sql, args...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

type identTask struct {
	TaskID    string          `json:"task_id"`
	Type      string          `json:"type"`
	State     string          `json:"state"`
	Retried   int             `json:"retried"`
	LastError string          `json:"last_error"`
	Result    json.RawMessage `json:"result"`
	Existing  bool            `json:"existing"`
	Queue     string          `json:"queue"`
}

func (r *identRig) enqueue(t *testing.T, tn identTenant, path string) identTask {
	t.Helper()
	res := r.call(t, http.MethodPost, path, tn.host(), tn.key, "")
	if res.status != http.StatusAccepted {
		t.Fatalf("POST %s: %d %s", path, res.status, res.body)
	}
	var out identTask
	if err := json.Unmarshal(res.body, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func (r *identRig) finished(t *testing.T, tn identTenant, id string) identTask {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		res := r.call(t, http.MethodGet, "/v1/tasks/"+id, tn.host(), tn.key, "")
		var out identTask
		if res.status == http.StatusOK {
			_ = json.Unmarshal(res.body, &out)
			if out.State == "completed" || out.State == "archived" {
				return out
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s not finished: %d %s", id, res.status, res.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type identPDFResult struct {
	StorageKey string `json:"storage_key"`
	SHA256     string `json:"sha256"`
	Bytes      int64  `json:"bytes"`
	FontPath   string `json:"font_path"`
	Unchanged  bool   `json:"unchanged"`
}

// TestTaskIdentityThroughItsLife follows one invoice's renders and
// reminders through the real enqueue service and worker, fair dispatch on
// and off, and compares every answer with the README's HTTP API section.
// It runs within one UTC day (testenv.OneUTCDay): a reminder's task id
// names the tenant's day, so requests on either side of midnight are two
// tasks, not the one a second request the same day gets.
func TestTaskIdentityThroughItsLife(t *testing.T) {
	t.Parallel()
	testenv.OneUTCDay(t, 5*time.Minute)
	for _, fair := range []bool{true, false} {
		t.Run(fmt.Sprintf("fair=%v", fair), func(t *testing.T) {
			r := startIdentRig(t, fair, "QUEUE_SHARDS", "2")
			acme := r.tenant(t, "acme", 3)
			globex := r.tenant(t, "globex", 3)
			// An archived render: its invoice deleted before it ran.
			r.exec(t, acme, `INSERT INTO invoices (id, number, customer_id, status, currency, amount) SELECT 9, 'X-9', customer_id, status, currency, amount FROM invoices WHERE id = 1`)
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, r.dbURL)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "invoice-pdf:"+acme.Schema+":9"); err != nil {
				t.Fatal(err)
			}
			gone := r.enqueue(t, acme, "/v1/invoices/9/pdf")
			r.exec(t, acme, `DELETE FROM invoices WHERE id = 9`)
			_ = tx.Rollback(ctx)
			if a := r.finished(t, acme, gone.TaskID); a.State != "archived" || a.LastError != "invoice not found" {
				t.Errorf("render of a deleted invoice: %+v", a)
			}
			if o := r.call(t, http.MethodGet, "/v1/tasks/"+gone.TaskID, globex.host(), globex.key, ""); o.status != 404 {
				t.Errorf("globex sees acme's archived task: %d %s", o.status, o.body)
			}

			first := r.enqueue(t, acme, "/v1/invoices/1/pdf")
			if first.Existing || first.State != "pending" || first.TaskID != "invoice:pdf:"+acme.ID+":1" {
				t.Errorf("first render: %+v", first)
			}
			done := r.finished(t, acme, first.TaskID)
			var res identPDFResult
			if done.State != "completed" || json.Unmarshal(done.Result, &res) != nil || res.SHA256 == "" || res.Unchanged {
				t.Fatalf("first render finished as %+v", done)
			}
			dl := r.call(t, http.MethodGet, "/v1/invoices/1/pdf", acme.host(), acme.key, "")
			if dl.status != 200 || dl.header.Get("ETag") != `"`+res.SHA256+`"` || int64(len(dl.body)) != res.Bytes {
				t.Errorf("download: %d etag %s len %d, result %+v", dl.status, dl.header.Get("ETag"), len(dl.body), res)
			}
			if nm := r.call(t, http.MethodGet, "/v1/invoices/1/pdf", acme.host(), acme.key, "", "If-None-Match", dl.header.Get("ETag")); nm.status != http.StatusNotModified {
				t.Errorf("If-None-Match: %d", nm.status)
			}
			// Other tenant: 404 for the exact id.
			if o := r.call(t, http.MethodGet, "/v1/tasks/"+first.TaskID, globex.host(), globex.key, ""); o.status != 404 {
				t.Errorf("globex sees acme's task: %d %s", o.status, o.body)
			}
			// After completion: a new task, existing false.
			again := r.enqueue(t, acme, "/v1/invoices/1/pdf")
			if again.Existing || again.TaskID != first.TaskID || again.State != "pending" {
				t.Errorf("render after completion: %+v", again)
			}
			done = r.finished(t, acme, again.TaskID)
			var res2 identPDFResult
			_ = json.Unmarshal(done.Result, &res2)
			if !res2.Unchanged || res2.SHA256 != res.SHA256 {
				t.Errorf("unchanged re-render: %s", done.Result)
			}
			// A changed invoice: new bytes and ETag.
			r.exec(t, acme, `UPDATE invoices SET notes = 'changed' WHERE id = 1`)
			third := r.enqueue(t, acme, "/v1/invoices/1/pdf")
			done = r.finished(t, acme, third.TaskID)
			var res3 identPDFResult
			_ = json.Unmarshal(done.Result, &res3)
			if res3.Unchanged || res3.SHA256 == res.SHA256 {
				t.Errorf("changed re-render: %s", done.Result)
			}
			dl2 := r.call(t, http.MethodGet, "/v1/invoices/1/pdf", acme.host(), acme.key, "", "If-None-Match", dl.header.Get("ETag"))
			if dl2.status != 200 || dl2.header.Get("ETag") != `"`+res3.SHA256+`"` {
				t.Errorf("download after change: %d etag %s want %s", dl2.status, dl2.header.Get("ETag"), res3.SHA256)
			}
			// Bulk: an id twice, the second existing.
			bulk := r.call(t, http.MethodPost, "/v1/invoices/pdf", acme.host(), acme.key, `{"invoice_ids":[2,2,1]}`)
			var bl struct {
				Tasks []struct {
					InvoiceID int64  `json:"invoice_id"`
					TaskID    string `json:"task_id"`
					State     string `json:"state"`
					Existing  bool   `json:"existing"`
				} `json:"tasks"`
			}
			// The second entry is the first's task, or, when a worker took
			// that task between the two (without fair dispatch the ids are
			// enqueued one by one), its follow-up (README: a repeat while a
			// render runs).
			if bulk.status != 202 || json.Unmarshal(bulk.body, &bl) != nil || len(bl.Tasks) != 3 || bl.Tasks[0].Existing ||
				!(bl.Tasks[0].TaskID == bl.Tasks[1].TaskID && bl.Tasks[1].Existing || bl.Tasks[1].TaskID == bl.Tasks[0].TaskID+":again") {
				t.Errorf("bulk with a repeated id: %d %s", bulk.status, bulk.body)
			}
			// Reminder: a second one the same day is the same task.
			rem := r.enqueue(t, acme, "/v1/invoices/3/reminders")
			rem2 := r.enqueue(t, acme, "/v1/invoices/3/reminders")
			if rem.Existing || rem2.TaskID != rem.TaskID {
				t.Errorf("reminders: %+v then %+v", rem, rem2)
			}
			remDone := r.finished(t, acme, rem.TaskID)
			t.Logf("reminder: %+v result %s", remDone, remDone.Result)
			rem3 := r.enqueue(t, acme, "/v1/invoices/3/reminders")
			if rem3.Existing || rem3.TaskID != rem.TaskID {
				t.Errorf("reminder after completion: %+v", rem3)
			}
			// Malformed ids.
			for _, id := range []string{"x", strings.Repeat("a", 300), "invoice:pdf:" + globex.ID + ":1"} {
				if o := r.call(t, http.MethodGet, "/v1/tasks/"+id, acme.host(), acme.key, ""); o.status != 404 {
					t.Errorf("GET task %.40s: %d %s", id, o.status, o.body)
				}
			}
		})
	}
}

// TestRequestsWhileARenderRuns: requests for an invoice whose render runs
// (held at its render lock) get its follow-up, single and bulk, fair
// dispatch on and off.
func TestRequestsWhileARenderRuns(t *testing.T) {
	t.Parallel()
	for _, fair := range []bool{true, false} {
		t.Run(fmt.Sprintf("fair=%v", fair), func(t *testing.T) {
			ctx := context.Background()
			r := startIdentRig(t, fair)
			acme := r.tenant(t, "acme", 3)
			conn, err := pgx.Connect(ctx, r.dbURL)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "invoice-pdf:"+acme.Schema+":2"); err != nil {
				t.Fatal(err)
			}
			first := r.enqueue(t, acme, "/v1/invoices/2/pdf")
			deadline := time.Now().Add(time.Minute)
			for {
				res := r.call(t, http.MethodGet, "/v1/tasks/"+first.TaskID, acme.host(), acme.key, "")
				var st identTask
				_ = json.Unmarshal(res.body, &st)
				if st.State == "active" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("render never active: %s", res.body)
				}
				time.Sleep(20 * time.Millisecond)
			}
			up := r.enqueue(t, acme, "/v1/invoices/2/pdf")
			if up.TaskID != first.TaskID+":again" || up.Existing || up.State != "pending" {
				t.Errorf("request while running: %+v", up)
			}
			up2 := r.enqueue(t, acme, "/v1/invoices/2/pdf")
			if up2.TaskID != first.TaskID+":again" || !up2.Existing {
				t.Errorf("second request while running: %+v", up2)
			}
			bulk := r.call(t, http.MethodPost, "/v1/invoices/pdf", acme.host(), acme.key, `{"invoice_ids":[2,2]}`)
			t.Logf("bulk while running: %d %s", bulk.status, bulk.body)
			if !strings.Contains(string(bulk.body), ":again") || strings.Contains(string(bulk.body), `"existing":false`) {
				t.Errorf("bulk while running: %s", bulk.body)
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			a := r.finished(t, acme, first.TaskID)
			b := r.finished(t, acme, up.TaskID)
			if a.State != "completed" || b.State != "completed" {
				t.Errorf("finished: %+v / %+v", a, b)
			}
			t.Logf("first %s; follow-up %s", a.Result, b.Result)
		})
	}
}
