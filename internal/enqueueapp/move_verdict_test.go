package enqueueapp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// switchNotPropagated is a catalog whose placement changes are saved but
// whose cache invalidation is never published (Redis refused it).
type switchNotPropagated struct{ storage.Catalog }

func (c switchNotPropagated) SetPlacement(ctx context.Context, id, from, to string, generation int64) (tenantctx.Tenant, error) {
	t, err := c.Catalog.SetPlacement(ctx, id, from, to, generation)
	if err != nil {
		return t, err
	}
	return t, fmt.Errorf("set placement of tenant %s: %w: injected", id, storage.ErrInvalidationFailed)
}

// switchUnanswered is a catalog whose answers to placement changes are
// all lost (the connection breaks as they come): nothing is saved, and the
// move cannot know it.
type switchUnanswered struct{ storage.Catalog }

func (switchUnanswered) SetPlacement(context.Context, string, string, string, int64) (tenantctx.Tenant, error) {
	return tenantctx.Tenant{}, errors.New("read tcp 127.0.0.1:5432: connection reset by peer")
}

// TestTenantMoveVerdictAfterTheSwitch: a move whose switch was saved but
// not propagated, or whose switch's outcome the catalog never told, ends
// with a verdict that says so (exit 1, the error saying what is left to
// do), not "failed": a failed move is one that left the tenant where it
// was, and an operator who reads it as such drops the copy on the target,
// which after a switch is where the tenant lives.
func TestTenantMoveVerdictAfterTheSwitch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		catalog func(storage.Catalog) storage.Catalog
		verdict string // the last progress line starts so
		on      string // where the catalog places the tenant after it
	}{
		{"not propagated", func(c storage.Catalog) storage.Catalog { return switchNotPropagated{c} },
			"switched to eu2, but not propagated to every process", "eu2"},
		{"outcome unknown", func(c storage.Catalog) storage.Catalog { return switchUnanswered{c} },
			"outcome unknown: the catalog did not say whether it switched the tenant to eu2", tenantctx.DefaultDatabase},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			tn := f.movable(t, "acme")
			bk := *f.deps
			bk.Tenancy = tenancy.New(tenancy.Config{Catalog: tc.catalog(f.deps.Catalog), Enqueuer: f.deps.Enqueuer,
				Documents: f.deps.Documents, SchemaPool: f.deps.SchemaPool, Pools: f.deps.Pools,
				Dispatcher: f.deps.Dispatcher, Plans: fair.DefaultPlans(), Logger: quietLogger()})
			// What the move left completing ends before the fixture's
			// backend closes (cleanups run last first).
			t.Cleanup(func() { _ = bk.Tenancy.Wait(context.Background()) })
			var stdout bytes.Buffer
			var stderr testenv.LogBuffer
			code := enqueueapp.Main(context.Background(),
				[]string{"tenant", "move", "acme", "--to", "eu2", "--grace", "10ms", "--drain-timeout", "300ms"},
				enqueueapp.IO{Stdout: &stdout, Stderr: &stderr, Getenv: getenv(f.env), Options: enqueueapp.Options{Backend: &bk}})
			t.Logf("exit %d\nstdout %q\nstderr:\n%s", code, stdout.String(), stderr.String())
			if code != enqueueapp.ExitFailure || stdout.Len() != 0 {
				t.Errorf("exit %d, stdout %q; want exit %d and no result", code, stdout.String(), enqueueapp.ExitFailure)
			}
			if now, err := f.deps.Postgres.TenantByID(context.Background(), tn.ID); err != nil || now.DatabaseName() != tc.on {
				t.Fatalf("set-up: the tenant is on %q (%v) after the move; want %q", now.DatabaseName(), err, tc.on)
			}
			line := regexp.MustCompile(`^tenant move acme: +[0-9]+\.[0-9]s: (.*)$`)
			var steps []string
			for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
				if sm := line.FindStringSubmatch(l); sm != nil {
					steps = append(steps, sm[1])
				}
			}
			if len(steps) == 0 || !strings.HasPrefix(steps[len(steps)-1], tc.verdict) {
				t.Errorf("progress lines %q; want the last to start with %q", steps, tc.verdict)
			}
		})
	}
}

// moveSteps runs `enqueue tenant move slug --to to` through Main and
// returns its exit code and its progress lines, without their prefix.
func (f *fixture) moveSteps(t *testing.T, slug, to string, opts enqueueapp.Options) (int, []string) {
	t.Helper()
	var stdout bytes.Buffer
	var stderr testenv.LogBuffer
	code := enqueueapp.Main(context.Background(), []string{"tenant", "move", slug, "--to", to, "--grace", "10ms"},
		enqueueapp.IO{Stdout: &stdout, Stderr: &stderr, Getenv: getenv(f.env), Options: opts})
	t.Logf("exit %d\nstdout %q\nstderr:\n%s", code, stdout.String(), stderr.String())
	line := regexp.MustCompile(`^tenant move ` + regexp.QuoteMeta(slug) + `: +[0-9]+\.[0-9]s: (.*)$`)
	var steps []string
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if sm := line.FindStringSubmatch(l); sm != nil {
			steps = append(steps, sm[1])
		}
	}
	return code, steps
}

// TestTenantMoveOfAPausedQueueSaysItStaysPaused: a move of a tenant whose
// queue an operator paused before it leaves the queue paused (step 5 of
// tenancy.Service.Move), and says so: its progress said "resume the
// queue" and it recorded tenant.queue_resumed after the operator's pause,
// so both the operator watching it and the audit log said the queue ran.
func TestTenantMoveOfAPausedQueueSaysItStaysPaused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tn := f.movable(t, "acme")
	ctx := context.Background()
	if _, err := f.deps.Tenancy.PauseQueue(ctx, tn.ID, "admin"); err != nil {
		t.Fatal(err)
	}
	code, steps := f.moveSteps(t, "acme", "eu2", enqueueapp.Options{})
	if code != enqueueapp.ExitOK {
		t.Fatalf("exit %d", code)
	}
	if st, err := f.deps.Tenancy.Queue(ctx, tn.ID); err != nil || !st.Paused {
		t.Fatalf("set-up: the queue after the move: %+v, %v; want the operator's pause kept", st, err)
	}
	stays := false
	for _, s := range steps {
		if strings.HasPrefix(s, "resume the queue") {
			t.Errorf("progress %q says the queue is resumed; the operator's pause keeps it paused", s)
		}
		stays = stays || strings.Contains(s, "stays paused")
	}
	if !stays {
		t.Errorf("progress lines %q; want one saying the queue stays paused", steps)
	}
	entries, err := f.deps.Postgres.AuditEntries(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	last := ""
	for _, e := range entries {
		if e.Action == string(tenancy.ActionQueuePaused) || e.Action == string(tenancy.ActionQueueResumed) {
			last = e.Action + " by " + e.Actor
		}
	}
	if !strings.HasPrefix(last, string(tenancy.ActionQueuePaused)) {
		t.Errorf("the audit log's last pause or resume of the queue is %q; want a pause: the queue is paused", last)
	}
}

// TestTenantMoveOfASuspendedTenantSaysTheSuspensionHoldsIt: a move of a
// suspended tenant (Move takes active and suspended ones) releases its own
// hold, but the suspension still holds the tenant's work; its progress
// said "resume the queue", so the operator watching it took the tenant's
// work for running, while nothing of it ran until the tenant was resumed.
// The progress says what holds it and what lifts it.
func TestTenantMoveOfASuspendedTenantSaysTheSuspensionHoldsIt(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tn := f.movable(t, "acme")
	ctx := context.Background()
	if _, err := f.deps.Tenancy.Suspend(ctx, tn.ID, "admin"); err != nil {
		t.Fatal(err)
	}
	code, steps := f.moveSteps(t, "acme", "eu2", enqueueapp.Options{})
	if code != enqueueapp.ExitOK {
		t.Fatalf("exit %d", code)
	}
	if st, err := f.deps.Tenancy.Queue(ctx, tn.ID); err != nil || !st.Suspended || st.Paused {
		t.Fatalf("set-up: the queue after the move: %+v, %v; want it held by the suspension alone", st, err)
	}
	says := false
	for _, s := range steps {
		if strings.HasPrefix(s, "resume the queue") {
			t.Errorf("progress %q says the queue is resumed; the suspension keeps the tenant's work held", s)
		}
		says = says || strings.Contains(s, "suspended") && strings.Contains(s, "/resume")
	}
	if !says {
		t.Errorf("progress lines %q; want one saying the suspension holds the tenant's work and how to lift it", steps)
	}
}
