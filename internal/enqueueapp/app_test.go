package enqueueapp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/backend"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// env is one test's environment variables on fresh servers.
func env(t *testing.T) map[string]string {
	t.Helper()
	return map[string]string{
		"DATABASE_URL":  testenv.Postgres(t),
		"REDIS_URL":     testenv.RedisURL(t),
		"DOMAIN_SUFFIX": ".example.com",
		"ADMIN_TOKEN":   "admin-secret-of-at-least-32-characters",
		"DOCUMENTS_DIR": t.TempDir(),
	}
}

func getenv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestRunServesAndShutsDown(t *testing.T) {
	t.Parallel()
	cfg, err := config.FromEnv(getenv(env(t)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- enqueueapp.RunWith(ctx, cfg, quietLogger(), enqueueapp.Options{
			Listener: ln, Ready: func(a net.Addr) { ready <- a },
		})
	}()
	var base string
	select {
	case a := <-ready:
		base = "http://" + a.String()
	case err := <-done:
		t.Fatalf("Run returned before serving: %v", err)
	}
	client := &http.Client{}
	defer client.CloseIdleConnections()
	call := func(method, path, body string) (int, []byte) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer admin-secret-of-at-least-32-characters")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, body := call(http.MethodGet, "/readyz", ""); code != http.StatusOK {
		t.Fatalf("readyz %d %s", code, body)
	}
	if code, body := call(http.MethodPost, "/admin/tenants", `{"slug":"acme"}`); code != http.StatusAccepted {
		t.Fatalf("provision %d %s", code, body)
	}
	if code, body := call(http.MethodGet, "/admin/tenants", ""); code != http.StatusOK || !strings.Contains(string(body), `"slug":"acme"`) {
		t.Fatalf("list %d %s", code, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), time.Second); err == nil {
		t.Fatal("still listening after shutdown")
	}
}

func TestRunBusyPort(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e := env(t)
	e["HTTP_ADDR"] = ln.Addr().String()
	var stderr bytes.Buffer
	code := enqueueapp.Main(context.Background(), []string{"serve"}, enqueueapp.IO{
		Stdout: io.Discard, Stderr: &stderr, Getenv: getenv(e),
	})
	if code != enqueueapp.ExitFailure {
		t.Fatalf("exit %d", code)
	}
	out := stderr.String()
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, "address already in use") || !strings.Contains(out, ln.Addr().String()) {
		t.Fatalf("want one clear line, got %q", out)
	}
}

// fixture is a backend on the test's servers, opened the way the CLI opens
// it.
type fixture struct {
	env  map[string]string
	deps *backend.Backend
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureEnv(t, env(t))
}

// newFixtureEnv is newFixture with the environment e.
func newFixtureEnv(t *testing.T, e map[string]string) *fixture {
	t.Helper()
	cfg, err := config.FromEnv(getenv(e))
	if err != nil {
		t.Fatal(err)
	}
	deps, err := backend.Open(context.Background(), cfg, quietLogger(), backend.Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = deps.Close() })
	return &fixture{env: e, deps: deps}
}

func (f *fixture) provision(t *testing.T, slug string) tenantctx.Tenant {
	t.Helper()
	res, err := f.deps.Tenancy.Provision(context.Background(), tenancy.NewTenant{Slug: slug}, "test")
	if err != nil {
		t.Fatal(err)
	}
	return res.Tenant
}

// run runs the CLI and returns its exit code, stdout and stderr.
func (f *fixture) run(t *testing.T, terminal bool, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := enqueueapp.Main(context.Background(), args, enqueueapp.IO{
		Stdout: &stdout, Stderr: &stderr, Getenv: getenv(f.env), Terminal: terminal,
	})
	return code, stdout.String(), stderr.String()
}

// migrationWorker stands in for cmd/worker's tenant:migrate handler: it
// migrates the tenant's schema and activates it, except for the slugs in
// broken, whose migrations fail for good. Like cmd/worker it registers with
// the fair dispatcher (heartbeats) and reports every finished attempt, which
// is what admits the tasks that wait in the tenants' backlogs.
// migrationWorker runs tenant:migrate as the worker does, writing its
// result; the tenants in broken fail, those in behind are migrated by an
// older release (to the version before the latest).
func (f *fixture) migrationWorker(t *testing.T, broken, behind map[string]bool) {
	t.Helper()
	const concurrency = 4
	srv := asynq.NewServer(f.deps.RedisConnOpt, asynq.Config{
		Queues: map[string]int{tasks.QueueCritical: 1}, Concurrency: concurrency, LogLevel: asynq.FatalLevel,
	})
	report := func(context.Context, *asynq.Task, time.Duration) {}
	if d := f.deps.Dispatcher; d != nil {
		rep := d.NewReporter(quietLogger())
		ctx, stop := context.WithCancel(context.Background())
		var member sync.WaitGroup
		member.Go(func() {
			d.Serve(ctx, fair.Membership{ID: "test-migrations", Queues: []string{tasks.QueueCritical}, Concurrency: concurrency,
				Interval: 100 * time.Millisecond}, quietLogger())
		})
		t.Cleanup(func() { stop(); member.Wait(); rep.Close(context.Background()) })
		report = func(ctx context.Context, task *asynq.Task, cost time.Duration) {
			id, _ := asynq.GetTaskID(ctx)
			var p tasks.TenantMigrate
			if json.Unmarshal(task.Payload(), &p) == nil {
				rep.Report(fair.Report{Queue: tasks.QueueCritical, TaskID: id, TenantID: p.TenantID, Type: task.Type(), Cost: cost})
			}
		}
	}
	var mu sync.Mutex
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeTenantMigrate, func(ctx context.Context, task *asynq.Task) error {
		defer func(start time.Time) { report(ctx, task, time.Since(start)) }(time.Now())
		var p tasks.TenantMigrate
		if err := json.Unmarshal(task.Payload(), &p); err != nil {
			return err
		}
		tn, err := f.deps.Catalog.TenantByID(ctx, p.TenantID)
		if err != nil {
			return err
		}
		if broken[tn.Slug] {
			return fmt.Errorf("migration 2 of %s: syntax error at or near \"oops\": %w", tn.Slug, asynq.SkipRetry)
		}
		mu.Lock() // keep the test's tiny pool calm
		defer mu.Unlock()
		target := 0
		if behind[tn.Slug] {
			target = schema.LatestVersion() - 1
		}
		res, err := schema.Migrate(ctx, f.deps.Pool, tn.Schema, target)
		if err != nil {
			return err
		}
		if tn.Status == tenantctx.StatusProvisioning {
			if _, err := f.deps.Catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
				return err
			}
		}
		out, err := json.Marshal(map[string]any{"schema": res.Schema, "from": res.From, "to": res.To})
		if err != nil {
			return err
		}
		_, err = task.ResultWriter().Write(out)
		return err
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
}

func TestMigrateWait(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, slug := range []string{"acme", "globex", "initech"} {
		f.provision(t, slug)
	}
	broken := f.provision(t, "broken")
	gone := f.provision(t, "gone")
	if _, err := f.deps.Catalog.SetStatus(context.Background(), gone.ID, tenantctx.StatusDeleting); err != nil {
		t.Fatal(err)
	}
	old := f.provision(t, "old")
	f.migrationWorker(t, map[string]bool{"broken": true}, map[string]bool{"old": true})

	code, stdout, stderr := f.run(t, false, "migrate", "--all", "--wait", "--timeout", "60s", "--poll", "50ms")
	if code != enqueueapp.ExitFailure {
		t.Fatalf("exit %d, stdout %q stderr %q", code, stdout, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if lines[0] != "enqueued 5 tenant migrations" || lines[len(lines)-1] != "migrations: 3/2/5 done/failed/total" {
		t.Fatalf("stdout:\n%s", stdout)
	}
	// A worker of an older release ran one: done, but not to this release's
	// version.
	if !strings.Contains(stderr, "old ("+old.ID+")") || !strings.Contains(stderr, fmt.Sprintf("migrated to version %d, not %d", schema.LatestVersion()-1, schema.LatestVersion())) {
		t.Fatalf("stderr:\n%s", stderr)
	}
	if strings.Contains(stdout, "\r") {
		t.Fatal("progress drawn with carriage returns on a non-terminal")
	}
	if !strings.Contains(stderr, "2 tenant migrations failed") || !strings.Contains(stderr, "broken ("+broken.ID+")") ||
		!strings.Contains(stderr, `syntax error at or near "oops"`) || strings.Contains(stderr, "acme") {
		t.Fatalf("stderr:\n%s", stderr)
	}
	for _, slug := range []string{"acme", "globex", "initech"} {
		if tn, err := f.deps.Catalog.TenantBySlug(context.Background(), slug); err != nil || tn.Status != tenantctx.StatusActive {
			t.Fatalf("%s: %+v, %v", slug, tn, err)
		}
	}

	// Without the broken tenant and the old release's, every migration
	// succeeds; on a terminal the progress line is redrawn in place.
	for _, id := range []string{broken.ID, old.ID} {
		if _, err := f.deps.Catalog.SetStatus(context.Background(), id, tenantctx.StatusDeleting); err != nil {
			t.Fatal(err)
		}
	}
	code, stdout, stderr = f.run(t, true, "migrate", "--all", "--wait", "--poll", "50ms")
	if code != enqueueapp.ExitOK {
		t.Fatalf("exit %d, stdout %q stderr %q", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "\r\033[Kmigrations: 3/0/3 done/failed/total\n") {
		t.Fatalf("terminal stdout %q", stdout)
	}
}

func TestMigrateWaitTimeout(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tn := f.provision(t, "acme")
	// No worker: nothing finishes.
	code, _, stderr := f.run(t, false, "migrate", "--all", "--wait", "--timeout", "300ms", "--poll", "50ms")
	if code != enqueueapp.ExitFailure || !strings.Contains(stderr, "unfinished when the wait ended") || !strings.Contains(stderr, tn.ID) {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	// Without --wait it only enqueues.
	code, stdout, _ := f.run(t, false, "migrate", "--all")
	if code != enqueueapp.ExitOK || stdout != "enqueued 1 tenant migrations\n" {
		t.Fatalf("exit %d stdout %q", code, stdout)
	}
}

// activeWithInvoices provisions tenant slug, migrates its schema, gives it
// n invoices (ids 1 to n) and makes it active.
func (f *fixture) activeWithInvoices(t *testing.T, slug string, n int) tenantctx.Tenant {
	t.Helper()
	ctx := context.Background()
	tn := f.provision(t, slug)
	if _, err := schema.Migrate(ctx, f.deps.SchemaPool, tn.Schema, 0); err != nil {
		t.Fatal(err)
	}
	err := schema.InTenant(tenantctx.WithTenant(ctx, tn), f.deps.Pool, func(ctx context.Context, tx pgx.Tx) error {
		news := make([]invoice.New, n)
		for i := range news {
			news[i] = invoice.New{Number: fmt.Sprintf("ACME-%d", i+1), Status: "sent", Customer: invoice.Customer{Name: "C", Email: "c@example.org"}}
		}
		_, err := invoice.Create(ctx, tx, news...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.deps.Catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
		t.Fatal(err)
	}
	return tn
}

func TestPDFCommand(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	tn := f.activeWithInvoices(t, "acme", 9)
	// An invoice the tenant does not have: nothing enqueued, as over HTTP.
	code, _, stderr := f.run(t, false, "pdf", "--tenant", "acme", "--invoice", "10")
	if code != enqueueapp.ExitFailure || !strings.Contains(stderr, "invoice 10 not found") {
		t.Fatalf("missing invoice: exit %d stderr %q", code, stderr)
	}
	missing := tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 10}.Spec().TaskID
	if ti, err := f.deps.Enqueuer.TenantTask(ctx, tn.ID, missing); !errors.Is(err, tasks.ErrTaskNotFound) {
		t.Fatalf("task of the missing invoice: %+v, %v; want none", ti, err)
	}
	code, stdout, stderr := f.run(t, false, "pdf", "--tenant", "acme", "--invoice", "9")
	if code != enqueueapp.ExitOK {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	var got struct {
		TaskID   string `json:"task_id"`
		Queue    string `json:"queue"`
		TenantID string `json:"tenant_id"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || got.TaskID == "" || got.Queue != tasks.QueueDefault || got.TenantID != tn.ID {
		t.Fatalf("stdout %q (%v)", stdout, err)
	}
	ti, err := f.deps.Inspector.GetTaskInfo(tasks.QueueDefault, got.TaskID)
	if err != nil || ti.Type != tasks.TypeInvoicePDF {
		t.Fatalf("task %+v, %v", ti, err)
	}
	var p tasks.InvoicePDF
	if err := json.Unmarshal(ti.Payload, &p); err != nil || p != (tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 9}) {
		t.Fatalf("payload %s", ti.Payload)
	}

	code, _, stderr = f.run(t, false, "pdf", "--tenant", "nosuch", "--invoice", "9")
	if code != enqueueapp.ExitFailure || !strings.Contains(stderr, storage.ErrNotFound.Error()) {
		t.Fatalf("unknown tenant: exit %d stderr %q", code, stderr)
	}
	for _, args := range [][]string{
		{"pdf", "--tenant", "acme"},
		{"pdf", "--tenant", "acme", "--invoice", "0"},
		{"pdf", "--tenant", "acme", "--invoice", "x"},
		{"pdf", "--tenant", "../x", "--invoice", "1"},
		{"pdf", "--tenant", "acme", "--invoice", "1", "extra"},
		{"migrate"},
		{"nosuch"},
	} {
		if code, _, _ := f.run(t, false, args...); code != enqueueapp.ExitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, enqueueapp.ExitUsage)
		}
	}
	for _, args := range [][]string{{"help"}, {"--help"}, {"serve", "--help"}, {"migrate", "--help"}, {"pdf", "-h"},
		{"tenant", "--help"}, {"tenant", "add", "--help"}, {"tenant", "move", "-h"}, {"tenant", "add", "acme", "--help"},
		{"db", "--help"}, {"db", "list", "--help"}, {"queues", "--help"}} {
		code, stdout, _ := f.run(t, false, args...)
		if code != enqueueapp.ExitOK || !strings.Contains(stdout, "usage: enqueue") {
			t.Errorf("%q: exit %d stdout %q", args, code, stdout)
		}
	}
}

// TestHelpWithoutCommandListsCommands: "enqueue --help" (and -h) shows
// every command, not only serve's flags, as "enqueue help" does.
func TestHelpWithoutCommandListsCommands(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"-h", "-help", "--help"} {
		var stdout, stderr bytes.Buffer
		code := enqueueapp.Main(context.Background(), []string{arg}, enqueueapp.IO{
			Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" },
		})
		out := stdout.String()
		if code != enqueueapp.ExitOK || !strings.Contains(out, "commands:") || !strings.Contains(out, "serve [--addr ADDR]") {
			t.Errorf("enqueue %s: exit %d stdout %q stderr %q, want the command list with serve's flag", arg, code, out, stderr.String())
		}
		for _, cmd := range []string{"migrate", "pdf", "db", "tenant", "queues"} {
			if !strings.Contains(out, "\n  "+cmd+" ") {
				t.Errorf("enqueue %s: command %s not listed:\n%s", arg, cmd, out)
			}
		}
	}
}
