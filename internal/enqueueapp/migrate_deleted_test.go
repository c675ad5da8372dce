package enqueueapp_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/internal/workerapp"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tenantctx"
)

// startRealWorker runs cmd/worker's RunWith on f's servers until the test
// ends.
func startRealWorker(t *testing.T, f *fixture) {
	t.Helper()
	vars := map[string]string{"HTTP_ADDR": "127.0.0.1:0", "OUTBOX_DIR": t.TempDir(), "WORKER_CONCURRENCY": "2",
		"SHUTDOWN_TIMEOUT": "5s", "SCHEDULER_ENABLED": "false"}
	for k, v := range f.env {
		vars[k] = v
	}
	cfg, err := config.FromEnv(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- workerapp.RunWith(ctx, cfg, config.NewLogger(cfg, io.Discard), workerapp.Options{Ready: func(a net.Addr) { ready <- a }})
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("worker exited before it was ready: %v", err)
	case <-time.After(2 * time.Minute): // a bound for the failure message, not a measurement
		cancel()
		t.Fatal("worker not ready after 2 minutes")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Error("worker did not stop within a minute")
		}
	})
}

// tenantAt creates a tenant with the given status whose schema (its own)
// is at version v: a tenant of the previous release, before migrate --all.
func tenantAt(t *testing.T, f *fixture, slug string, status tenantctx.Status, v int) tenantctx.Tenant {
	t.Helper()
	ctx := context.Background()
	tn, err := tenantctx.New(slug, slug, "free")
	if err != nil {
		t.Fatal(err)
	}
	tn.Status = status
	if tn, err = f.deps.Catalog.CreateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	if _, err := schema.MigrateWith(ctx, f.deps.SchemaPool, tn.Schema, schema.MigrateOptions{Target: v, Create: &schema.Creation{Owner: tn.ID}}); err != nil {
		t.Fatal(err)
	}
	return tn
}

// TestMigrateWaitTenantDeletedMeanwhile: a tenant deleted while `migrate
// --all --wait` waits (its tenant:migrate then archived as "being
// deleted", or erased with the tenant) is not a failed migration: the
// command migrates every other tenant, a suspended one included, and exits
// 0, saying how many tenants were deleted.
func TestMigrateWaitTenantDeletedMeanwhile(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	var all []tenantctx.Tenant
	for i := range 5 {
		status := tenantctx.StatusActive
		if i == 3 {
			status = tenantctx.StatusSuspended
		}
		all = append(all, tenantAt(t, f, fmt.Sprintf("del%d", i), status, schema.LatestVersion()-2))
	}
	victim := all[1]

	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, stdout, stderr := f.run(t, false, "migrate", "--all", "--wait", "--timeout", "2m", "--poll", "100ms")
		done <- result{code, stdout, stderr}
	}()
	// Every migration is enqueued, no worker runs yet: the operator's
	// deletion comes now.
	for _, tn := range all {
		for {
			if _, err := f.deps.Enqueuer.TenantTask(ctx, tn.ID, "tenant:migrate:"+tn.ID); err == nil {
				break
			}
			select {
			case r := <-done:
				t.Fatalf("migrate returned before its tasks were seen: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	if _, err := f.deps.Tenancy.RequestDeletion(ctx, victim.ID, "test"); err != nil {
		t.Fatal(err)
	}
	startRealWorker(t, f)

	r := <-done
	if r.code != enqueueapp.ExitOK {
		t.Errorf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", r.code, enqueueapp.ExitOK, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if last := lines[len(lines)-1]; last != "migrations: 4/0/5 done/failed/total (1 tenants deleted)" {
		t.Errorf("last progress line %q; stdout:\n%s", last, r.stdout)
	}
	for _, tn := range all {
		if tn.ID == victim.ID {
			continue
		}
		if v, err := schema.Version(ctx, f.deps.SchemaPool, tn.Schema); err != nil || v != schema.LatestVersion() {
			t.Errorf("%s (%s) at version %d, %v; want %d", tn.Slug, tn.Status, v, err, schema.LatestVersion())
		}
	}
}
