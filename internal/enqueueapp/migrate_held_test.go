package enqueueapp_test

import (
	"context"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestMigrateWaitNamesAPausedTenant: a tenant whose queue an operator
// paused keeps its tenant:migrate waiting in its backlog until it is
// resumed, and so does one a move holds (here the hold of a move killed
// outright, until the workers' check releases it). `migrate --all --wait` says so, in the progress line and in the
// list of unfinished tenants at the end, with what lets it run, instead of
// leaving the operator to wait out --timeout (10 minutes by default) for a
// tenant listed without a reason.
func TestMigrateWaitNamesAPausedTenant(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	var paused, moving tenantctx.Tenant
	for _, slug := range []string{"acme", "globex", "initech"} {
		tn := f.provision(t, slug)
		if _, err := f.deps.Catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
			t.Fatal(err)
		}
		switch slug {
		case "acme":
			paused = tn
		case "initech":
			moving = tn
		}
	}
	f.migrationWorker(t, nil, nil)
	// Their provisioning migrations ran (or are discarded with the
	// pause's backlog); the upgrade of migrate --all is the one that waits.
	code, _, stderr := f.run(t, false, "migrate", "--all", "--wait", "--timeout", "60s", "--poll", "50ms")
	if code != enqueueapp.ExitOK {
		t.Fatalf("first migrate: exit %d stderr %q", code, stderr)
	}
	if _, err := f.deps.Tenancy.PauseQueue(ctx, paused.ID, "test"); err != nil {
		t.Fatal(err)
	}
	// The hold a move killed outright leaves (no worker here releases it).
	if _, err := f.deps.Dispatcher.Hold(ctx, moving.ID, fair.Moving, f.deps.Layout.Queues()...); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := f.run(t, false, "migrate", "--all", "--wait", "--timeout", "2s", "--poll", "50ms")
	if code != enqueueapp.ExitFailure {
		t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, enqueueapp.ExitFailure, stdout, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if last := lines[len(lines)-1]; last != "migrations: 1/0/3 done/failed/total (2 held: queue paused or moving)" {
		t.Errorf("last progress line %q, want the paused tenant counted as held; stdout:\n%s", last, stdout)
	}
	want := "acme (" + paused.ID + "): waiting: its queue is paused (POST /admin/tenants/" + paused.ID + "/queue/resume lets it run)"
	if !strings.Contains(stderr, want) || strings.Contains(stderr, "globex") {
		t.Errorf("stderr does not say why acme's migration waits (want %q):\n%s", want, stderr)
	}
	if want := "initech (" + moving.ID + "): waiting: a tenant move holds its queue"; !strings.Contains(stderr, want) {
		t.Errorf("stderr does not say why initech's migration waits (want %q):\n%s", want, stderr)
	}
}
