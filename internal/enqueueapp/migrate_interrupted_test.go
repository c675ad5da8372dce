package enqueueapp_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/tenantctx"
)

// cancelOnWrite is an output that cancels a context once what was written
// to it contains a string: the signal that stops a command at a known
// point of its progress.
type cancelOnWrite struct {
	mu     sync.Mutex
	b      bytes.Buffer
	after  string
	cancel context.CancelFunc
}

func (c *cancelOnWrite) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.b.Write(p)
	if strings.Contains(c.b.String(), c.after) {
		c.cancel()
	}
	return n, err
}

func (c *cancelOnWrite) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}

// TestMigrateWaitInterruptedSaysWhatIsLeft: a SIGTERM or Ctrl-C while
// `migrate --all --wait` waits ends the wait (the migrations go on in the
// workers) with its own exit code, ExitInterrupted, and a message saying
// it was interrupted, how many tenants are done and how many are left,
// and that running the command again continues; it printed "context
// canceled" as its reason, with exit 1, as for a failed migration.
func TestMigrateWaitInterruptedSaysWhatIsLeft(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bg := context.Background()
	var paused tenantctx.Tenant
	for _, slug := range []string{"acme", "globex"} {
		tn := f.provision(t, slug)
		if _, err := f.deps.Catalog.SetStatus(bg, tn.ID, tenantctx.StatusActive); err != nil {
			t.Fatal(err)
		}
		if slug == "acme" {
			paused = tn
		}
	}
	f.migrationWorker(t, nil, nil)
	if code, _, stderr := f.run(t, false, "migrate", "--all", "--wait", "--timeout", "60s", "--poll", "50ms"); code != enqueueapp.ExitOK {
		t.Fatalf("first migrate: exit %d stderr %q", code, stderr)
	}
	// acme's next migration waits for its queue to be resumed: the wait
	// is interrupted with globex's done and acme's left.
	if _, err := f.deps.Tenancy.PauseQueue(bg, paused.ID, "test"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	stdout := &cancelOnWrite{after: "migrations: 1/0/2", cancel: cancel}
	var stderr bytes.Buffer
	code := enqueueapp.Main(ctx, []string{"migrate", "--all", "--wait", "--timeout", "60s", "--poll", "50ms"}, enqueueapp.IO{
		Stdout: stdout, Stderr: &stderr, Getenv: getenv(f.env),
	})
	if code != enqueueapp.ExitInterrupted {
		t.Errorf("exit %d, want ExitInterrupted (%d); stdout %q stderr %q", code, enqueueapp.ExitInterrupted, stdout, stderr.String())
	}
	msg := stderr.String()
	for _, want := range []string{"interrupted", "1 of 2 tenant migrations done", "1 left", "acme (" + paused.ID + ")", "migrate --all --wait", "again"} {
		if !strings.Contains(msg, want) {
			t.Errorf("stderr does not say %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "context canceled") {
		t.Errorf("stderr gives the cancelled context as the reason:\n%s", msg)
	}
}
