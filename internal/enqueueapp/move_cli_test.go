package enqueueapp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// movable provisions an active, migrated tenant slug on main and registers
// a second database, eu2, to move it to.
func (f *fixture) movable(t *testing.T, slug string) tenantctx.Tenant {
	t.Helper()
	ctx := context.Background()
	if code, _, stderr := f.run(t, false, "db", "add", "eu2", testenv.Postgres(t)); code != enqueueapp.ExitOK {
		t.Fatalf("db add: exit %d stderr %q", code, stderr)
	}
	p, err := f.deps.Tenancy.Provision(ctx, tenancy.NewTenant{Slug: slug, Database: tenantctx.DefaultDatabase}, "test")
	if err != nil {
		t.Fatal(err)
	}
	res := p.Tenant
	if _, err := schema.Migrate(ctx, f.deps.SchemaPool, res.Schema, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.deps.Catalog.SetStatus(ctx, res.ID, tenantctx.StatusActive); err != nil {
		t.Fatal(err)
	}
	return res
}

// runningTask starts a worker whose invoice:pdf handler blocks until the
// test ends, enqueues a render of tn and waits until it runs: a move of tn
// waits for it.
// It returns a function that lets the render finish.
func (f *fixture) runningTask(t *testing.T, tn tenantctx.Tenant) (finish func()) {
	t.Helper()
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	srv := asynq.NewServer(f.deps.RedisConnOpt, asynq.Config{
		Queues: map[string]int{tasks.QueueDefault: 1}, Concurrency: 1, LogLevel: asynq.FatalLevel,
		ShutdownTimeout: 5 * time.Second,
	})
	mux := asynq.NewServeMux()
	// As cmd/worker does, report each finished task: that ends its
	// admission, which the move waits for.
	rep := f.deps.Dispatcher.NewReporter(quietLogger())
	t.Cleanup(func() { rep.Close(context.Background()) })
	mux.HandleFunc(tasks.TypeInvoicePDF, func(ctx context.Context, task *asynq.Task) error {
		defer func(start time.Time) {
			id, _ := asynq.GetTaskID(ctx)
			q, _ := asynq.GetQueueName(ctx)
			rep.Report(fair.Report{Queue: q, TaskID: id, TenantID: tn.ID, Type: task.Type(), Cost: time.Since(start)})
		}(time.Now())
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { once.Do(func() { close(release) }); srv.Shutdown() })
	if _, err := f.deps.Enqueuer.Enqueue(context.Background(), tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the render did not start")
	}
	return func() { once.Do(func() { close(release) }) }
}

// TestTenantMoveProgress: tenant move says on stderr what it does while
// it runs, each step with the time since it began (a tenant waiting
// for a running task, a copy that holds the tenant's writes), and keeps
// stdout to the JSON result.
func TestTenantMoveProgress(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tn := f.movable(t, "acme")
	finish := f.runningTask(t, tn)
	var stdout bytes.Buffer
	var stderr testenv.LogBuffer
	done := make(chan int, 1)
	go func() {
		done <- enqueueapp.Main(context.Background(), []string{"tenant", "move", "acme", "--to", "eu2", "--grace", "10ms"},
			enqueueapp.IO{Stdout: &stdout, Stderr: &stderr, Getenv: getenv(f.env)})
	}()
	// While it waits for the running render, it says so.
	testenv.WaitFor(t, 30*time.Second, "the move to report the running task", func() bool {
		return strings.Contains(stderr.String(), "wait for 1 running tasks")
	})
	finish()
	var code int
	select {
	case code = <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("tenant move did not end; stderr:\n%s", stderr.String())
	}
	t.Logf("exit %d\nstdout %s\nstderr:\n%s", code, stdout.String(), stderr.String())
	if code != enqueueapp.ExitOK {
		t.Fatalf("exit %d", code)
	}
	var m tenancy.Moved
	if err := json.Unmarshal(stdout.Bytes(), &m); err != nil || m.To != "eu2" || !m.OldSchemaDropped {
		t.Fatalf("stdout %q: %+v, %v", stdout.String(), m, err)
	}
	steps := []string{"pause the queue", "wait for 1 running tasks", "copy the schema " + tn.Schema + " from main to eu2",
		"copied and verified", "switched to eu2", "drop the old schema", "resume the queue", "moved to eu2"}
	line := regexp.MustCompile(`^tenant move acme: +[0-9]+\.[0-9]s: (.*)$`)
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if sm := line.FindStringSubmatch(l); sm != nil {
			got = append(got, sm[1])
		}
	}
	next := 0
	for _, g := range got {
		if next < len(steps) && strings.HasPrefix(g, steps[next]) {
			next++
		}
	}
	if next != len(steps) {
		t.Fatalf("progress lines %q: missing %q (want, in order, %q)", got, steps[next], steps)
	}
}

// TestTenantMoveInterrupted: Ctrl-C while a move waits for the tenant's
// running tasks stops it: exit 1, an error that says where it stopped, the
// queue no longer held, nothing created on the target.
func TestTenantMoveInterrupted(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tn := f.movable(t, "acme")
	finish := f.runningTask(t, tn)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout bytes.Buffer
	var stderr testenv.LogBuffer
	done := make(chan int, 1)
	go func() {
		done <- enqueueapp.Main(ctx, []string{"tenant", "move", "acme", "--to", "eu2"}, enqueueapp.IO{
			Stdout: &stdout, Stderr: &stderr, Getenv: getenv(f.env),
		})
	}()
	testenv.WaitFor(t, 30*time.Second, "the move waits for the running task", func() bool {
		return strings.Contains(stderr.String(), "wait for 1 running tasks")
	})
	cancel()
	var code int
	select {
	case code = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("tenant move did not stop after the interrupt")
	}
	t.Logf("exit %d\nstdout %q\nstderr:\n%s", code, stdout.String(), stderr.String())
	if code != enqueueapp.ExitFailure {
		t.Errorf("exit %d, want %d", code, enqueueapp.ExitFailure)
	}
	st, err := f.deps.Tenancy.Queue(context.Background(), tn.ID)
	if err != nil || st.Paused {
		t.Errorf("after the interrupt the tenant's queue is still held: %+v, %v", st, err)
	}
	if !strings.Contains(stderr.String(), "wait for running tasks: context canceled") || !strings.Contains(stderr.String(), "resume the queue") {
		t.Errorf("stderr does not say where the move stopped and that the queue was resumed:\n%s", stderr.String())
	}
	if exists, err := schemaExists(f, "eu2", tn.Schema); err != nil || exists {
		t.Errorf("schema %s on eu2 after the interrupted move: %v, %v", tn.Schema, exists, err)
	}
	// Run again once the render ended, it completes.
	finish()
	code, out, errOut := f.run(t, false, "tenant", "move", "acme", "--to", "eu2", "--grace", "10ms")
	if code != enqueueapp.ExitOK || !strings.Contains(out, `"to":"eu2"`) {
		t.Fatalf("move again: exit %d stdout %q stderr %q", code, out, errOut)
	}
}

// schemaExists reports whether the tenant database db holds schema name.
func schemaExists(f *fixture, db, name string) (bool, error) {
	ctx := context.Background()
	pool, err := f.deps.Pools.SchemaPool(ctx, db)
	if err != nil {
		return false, err
	}
	var exists bool
	err = pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, name).Scan(&exists)
	return exists, err
}

// TestTenantMoveHangup: a move whose terminal goes away (SIGHUP: the
// operator's ssh session dropped) stops as after Ctrl-C, releasing the
// tenant's queue, instead of dying with it held: nothing but another move
// lifts a move's hold.
func TestTenantMoveHangup(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tn := f.movable(t, "acme")
	f.runningTask(t, tn)

	m := f.startMove(t, "acme", "eu2")
	testenv.WaitFor(t, 30*time.Second, "the move waits for the running task", func() bool {
		return strings.Contains(m.stderr.String(), "wait for 1 running tasks")
	})
	err := m.signal(t, syscall.SIGHUP)
	t.Logf("exit: %v\nstderr:\n%s", err, m.stderr.String())
	st, qerr := f.deps.Tenancy.Queue(context.Background(), tn.ID)
	if qerr != nil || st.Paused {
		// An operator's resume does not lift a move's hold.
		rerr := f.deps.Tenancy.ResumeQueue(context.Background(), tn.ID, "test")
		after, _ := f.deps.Tenancy.Queue(context.Background(), tn.ID)
		t.Fatalf("after SIGHUP the tenant's queue is still held by the move: paused %v, %v; after ResumeQueue (%v): paused %v",
			st.Paused, qerr, rerr, after.Paused)
	}
}

// moveProcess is a running `enqueue tenant move`.
type moveProcess struct {
	cmd    *exec.Cmd
	stderr *testenv.LogBuffer
	exited chan error
}

// startMove starts the built `enqueue tenant move slug --to to` with the
// fixture's environment; the test's cleanup kills it if it still runs.
func (f *fixture) startMove(t *testing.T, slug, to string) *moveProcess {
	t.Helper()
	bin := testenv.BuildBinary(t, "github.com/invoicing/tenantworker/cmd/enqueue")
	m := &moveProcess{cmd: exec.Command(bin, "tenant", "move", slug, "--to", to), stderr: new(testenv.LogBuffer), exited: make(chan error, 1)}
	for k, v := range f.env {
		m.cmd.Env = append(m.cmd.Env, k+"="+v)
	}
	m.cmd.Stderr = m.stderr
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.exited <- m.cmd.Wait() }()
	t.Cleanup(func() {
		_ = m.cmd.Process.Kill()
		<-m.exited
	})
	return m
}

// signal sends sig to the move and returns its exit once it ended; it
// fails the test if the move still runs 30 s later.
func (m *moveProcess) signal(t *testing.T, sig os.Signal) error {
	t.Helper()
	if err := m.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-m.exited:
		m.exited <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("tenant move still running 30 s after %v; stderr:\n%s", sig, m.stderr.String())
		return nil
	}
}
