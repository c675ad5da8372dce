package enqueueapp_test

import (
	"bytes"
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/tasks"
)

// TestDispatchModeCommand: the first process on a Redis records its
// FAIR_DISPATCH; a process with the other setting refuses to start and
// says how to switch; "enqueue dispatch-mode plain" refuses while fair
// dispatch holds a task (the tenant:migrate of a provisioning), switches
// once it holds none, and then the fair processes are the ones refused,
// until "dispatch-mode fair" switches back.
func TestDispatchModeCommand(t *testing.T) {
	t.Parallel()
	f := newFixture(t) // a fair process (the default) has started
	ctx := context.Background()
	plainEnv := maps.Clone(f.env)
	plainEnv["FAIR_DISPATCH"] = "false"
	run := func(env map[string]string, args ...string) (int, string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := enqueueapp.Main(ctx, args, enqueueapp.IO{Stdout: &stdout, Stderr: &stderr, Getenv: getenv(env)})
		return code, stdout.String(), stderr.String()
	}

	if code, stdout, stderr := run(f.env, "dispatch-mode"); code != enqueueapp.ExitOK || stdout != "fair (FAIR_DISPATCH=true)\n" {
		t.Fatalf("dispatch-mode: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	code, _, stderr := run(plainEnv, "db", "list")
	if code != enqueueapp.ExitFailure || !strings.Contains(stderr, "FAIR_DISPATCH=false") || !strings.Contains(stderr, "enqueue dispatch-mode") {
		t.Fatalf("a plain process on a fair Redis: exit %d stderr %q, want a refusal that says how to switch", code, stderr)
	}

	tn := f.provision(t, "acme") // enqueues its tenant:migrate through fair admission
	code, _, stderr = run(f.env, "dispatch-mode", "plain")
	if code != enqueueapp.ExitFailure || !strings.Contains(stderr, "switch refused") || !strings.Contains(stderr, "1 admitted") {
		t.Fatalf("dispatch-mode plain with a task admitted: exit %d stderr %q", code, stderr)
	}
	if code, stdout, _ := run(f.env, "dispatch-mode"); stdout != "fair (FAIR_DISPATCH=true)\n" {
		t.Fatalf("after a refused switch: exit %d stdout %q", code, stdout)
	}

	if _, err := f.deps.Dispatcher.Drain(ctx, tn.ID, f.deps.Layout.Queues()...); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run(plainEnv, "dispatch-mode", "plain")
	if code != enqueueapp.ExitOK || stdout != "switched from fair to plain: start every process with FAIR_DISPATCH=false\n" {
		t.Fatalf("dispatch-mode plain with nothing left: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	if code, _, stderr := run(plainEnv, "db", "list"); code != enqueueapp.ExitOK {
		t.Fatalf("a plain process after the switch: exit %d stderr %q", code, stderr)
	}
	if code, _, stderr := run(f.env, "db", "list"); code != enqueueapp.ExitFailure || !strings.Contains(stderr, "FAIR_DISPATCH=true") {
		t.Fatalf("a fair process after the switch: exit %d stderr %q, want refused", code, stderr)
	}
	if code, stdout, stderr := run(f.env, "dispatch-mode", "fair"); code != enqueueapp.ExitOK || !strings.Contains(stdout, "switched from plain to fair") {
		t.Fatalf("dispatch-mode fair: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	if code, stdout, _ := run(f.env, "dispatch-mode", "fair"); code != enqueueapp.ExitOK || stdout != "fair already (FAIR_DISPATCH=true)\n" {
		t.Fatalf("dispatch-mode fair again: exit %d stdout %q", code, stdout)
	}

	for _, args := range [][]string{{"dispatch-mode", "fifo"}, {"dispatch-mode", "fair", "plain"}} {
		if code, _, _ := run(f.env, args...); code != enqueueapp.ExitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, enqueueapp.ExitUsage)
		}
	}
	if code, stdout, _ := run(f.env, "dispatch-mode", "--help"); code != enqueueapp.ExitOK || !strings.Contains(stdout, "dispatch-mode [fair|plain]") {
		t.Errorf("dispatch-mode --help: exit %d stdout %q", code, stdout)
	}
}

// TestDispatchModePlainLooksAtEveryShard: the switch to plain checks
// every queue shard there can be, not only those of the command's own
// QUEUE_SHARDS_SERVED: run with a smaller one than the fleet's, it let a
// switch strand the tasks waiting in the other shards' backlogs.
func TestDispatchModePlainLooksAtEveryShard(t *testing.T) {
	t.Parallel()
	f := newFixture(t) // QUEUE_SHARDS unset: the shards critical, default, low
	ctx := context.Background()
	const queue = "default_2" // a shard of a fleet with QUEUE_SHARDS=3; admitted at once (no worker needed)
	msg := fair.Message{ID: "invoice:pdf:tn_othershard:1", Type: tasks.TypeInvoicePDF, Queue: queue,
		Payload: []byte(`{"tenant_id":"tn_othershard","invoice_id":1}`), Retry: 10, Timeout: time.Minute}
	if _, err := f.deps.Dispatcher.Enqueue(ctx, "tn_othershard", fair.Policy{Weight: 1}, []fair.Task{{Message: msg}}); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := enqueueapp.Main(ctx, []string{"dispatch-mode", "plain"}, enqueueapp.IO{Stdout: &stdout, Stderr: &stderr, Getenv: getenv(f.env)})
	if code != enqueueapp.ExitFailure || !strings.Contains(stderr.String(), "switch refused") || !strings.Contains(stderr.String(), queue+": ") {
		t.Fatalf("dispatch-mode plain with a task admitted in %s: exit %d stdout %q stderr %q; want the switch refused naming it",
			queue, code, stdout.String(), stderr.String())
	}
}
