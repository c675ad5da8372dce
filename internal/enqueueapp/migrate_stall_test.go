package enqueueapp_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestMigrateWaitRidesOutARedisRestart: `migrate --all --wait` polls the
// migrations' tasks in Redis for up to --timeout while the workers run
// them. A look-up that fails while Redis is away for a moment (a restart,
// a failover) is no reason to give up: the migrations carry on in the
// workers, and the wait used to end there with exit 1 and the look-up's
// error, leaving the operator without the outcome asked for. It keeps
// polling, saying in its progress that look-ups fail, and ends as the
// migrations do.
func TestMigrateWaitRidesOutARedisRestart(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedis(t, testenv.RedisOptions{AppendOnly: true})
	e := env(t)
	e["REDIS_URL"] = rs.URL()
	f := newFixtureEnv(t, e)
	ctx := context.Background()
	var tenants []tenantctx.Tenant
	for _, slug := range []string{"acme", "globex"} {
		tn := f.provision(t, slug)
		if _, err := f.deps.Catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
			t.Fatal(err)
		}
		tenants = append(tenants, tn)
	}
	f.migrationWorker(t, nil, nil)
	if code, _, stderr := f.run(t, false, "migrate", "--all", "--wait", "--timeout", "60s", "--poll", "50ms"); code != enqueueapp.ExitOK {
		t.Fatalf("first migrate: exit %d stderr %q", code, stderr)
	}
	// The upgrades wait behind pauses, so that the wait is still polling
	// when Redis stalls.
	for _, tn := range tenants {
		if _, err := f.deps.Tenancy.PauseQueue(ctx, tn.ID, "test"); err != nil {
			t.Fatal(err)
		}
	}
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, stdout, stderr := f.run(t, false, "migrate", "--all", "--wait", "--timeout", "90s", "--poll", "50ms")
		done <- result{code, stdout, stderr}
	}()
	// Both upgrades enqueued: the command is polling.
	deadline := time.Now().Add(30 * time.Second)
	for _, tn := range tenants {
		for {
			q, err := f.deps.Tenancy.Queue(ctx, tn.ID)
			if err == nil && q.Waiting == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the upgrade of %s is not waiting in its backlog: %+v, %v", tn.Slug, q, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The server goes away for a moment: look-ups fail at once.
	rs.Stop(t)
	select {
	case r := <-done:
		rs.Start(t)
		t.Fatalf("the wait ended while Redis was down: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	case <-time.After(10 * time.Second):
	}
	rs.Start(t)
	// The clients dial again within a second or so of the server's return.
	for _, tn := range tenants {
		deadline := time.Now().Add(20 * time.Second)
		for {
			err := f.deps.Tenancy.ResumeQueue(ctx, tn.ID, "test")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	select {
	case r := <-done:
		if r.code != enqueueapp.ExitOK {
			t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, enqueueapp.ExitOK, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stdout, "look-ups failing") {
			t.Errorf("the progress never said that look-ups failed:\n%s", r.stdout)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if last := lines[len(lines)-1]; last != "migrations: 2/0/2 done/failed/total" {
			t.Errorf("last progress line %q", last)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the wait did not end after Redis came back and the queue was resumed")
	}
}
