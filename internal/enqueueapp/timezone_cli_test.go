package enqueueapp_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestTenantAddTimeZone: enqueue tenant add --time-zone gives the tenant
// its zone (UTC without the flag) and prints it; "", "Local" and unknown
// names are usage errors (exit 2) that create nothing.
func TestTenantAddTimeZone(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	for _, bad := range []string{"", "Local", "Mars/Olympus_Mons"} {
		code, stdout, stderr := f.run(t, false, "tenant", "add", "badzone", "--time-zone", bad)
		if code != enqueueapp.ExitUsage || stdout != "" || !strings.Contains(stderr, "--time-zone") || !strings.Contains(stderr, "invalid time zone") {
			t.Errorf("tenant add --time-zone %q: exit %d stdout %q stderr %q; want exit %d naming --time-zone", bad, code, stdout, stderr, enqueueapp.ExitUsage)
		}
	}
	if _, err := f.deps.Catalog.TenantBySlug(ctx, "badzone"); err == nil {
		t.Fatal("a tenant with a refused time zone was created")
	}
	for slug, want := range map[string]string{"berlin": "Europe/Berlin", "plain": "UTC"} {
		args := []string{"tenant", "add", slug}
		if slug == "berlin" {
			args = append(args, "--time-zone", want)
		}
		code, stdout, stderr := f.run(t, false, args...)
		if code != enqueueapp.ExitOK {
			t.Fatalf("%v: exit %d stderr %q", args, code, stderr)
		}
		var out map[string]any
		if err := json.Unmarshal([]byte(stdout), &out); err != nil || out["time_zone"] != want {
			t.Errorf("%v: stdout %q (%v), want time_zone %q", args, stdout, err, want)
		}
		if tn, err := f.deps.Catalog.TenantBySlug(ctx, slug); err != nil || tn.TimeZone != want {
			t.Errorf("%v: catalog row %+v, %v; want time zone %q", args, tn, err, want)
		}
	}
}

// TestTenantTimeZoneCommand: enqueue tenant time-zone SLUG ZONE changes
// the zone the catalog holds, prints the tenant as JSON and writes
// tenant.time_zone_changed with the CLI as the actor.
func TestTenantTimeZoneCommand(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	tn := f.provision(t, "acme")
	code, stdout, stderr := f.run(t, false, "tenant", "time-zone", "acme", "Pacific/Auckland")
	if code != enqueueapp.ExitOK {
		t.Fatalf("tenant time-zone: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	var out tenantctx.Tenant
	if err := json.Unmarshal([]byte(stdout), &out); err != nil || out.ID != tn.ID || out.Slug != "acme" || out.TimeZone != "Pacific/Auckland" {
		t.Errorf("tenant time-zone: stdout %q (%v), want the tenant %s in Pacific/Auckland", stdout, err, tn.ID)
	}
	if got, err := f.deps.Postgres.TenantByID(ctx, tn.ID); err != nil || got.TimeZone != "Pacific/Auckland" {
		t.Errorf("catalog row after tenant time-zone: %+v, %v; want time zone Pacific/Auckland", got, err)
	}
	entries, err := f.deps.Catalog.AuditEntries(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	var changes []string
	for _, e := range entries {
		if e.Action == string(tenancy.ActionTimeZoneChanged) {
			changes = append(changes, e.Actor+" "+string(e.Detail))
		}
	}
	if len(changes) != 1 || !strings.HasPrefix(changes[0], enqueueapp.ActorCLI+" ") || !strings.Contains(changes[0], `"Pacific/Auckland"`) {
		t.Errorf("audit entries %s: %q, want one by %q naming Pacific/Auckland", tenancy.ActionTimeZoneChanged, changes, enqueueapp.ActorCLI)
	}
}

// TestTenantTimeZoneCommandMistakes: a zone the embedded zone database
// does not know (or "", "Local") is a usage error (exit 2) that reaches no
// server and changes nothing; an unknown slug and a tenant being deleted
// fail (exit 1) saying so, with nothing on stdout.
func TestTenantTimeZoneCommandMistakes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	tn := f.provision(t, "acme")
	for _, args := range [][]string{
		{"acme", "Mars/Olympus_Mons"}, {"acme", ""}, {"acme", "Local"}, {"acme", "posix/Europe/Berlin"},
		{"acme"}, {"acme", "UTC", "Europe/Berlin"},
	} {
		code, stdout, stderr := f.run(t, false, append([]string{"tenant", "time-zone"}, args...)...)
		if code != enqueueapp.ExitUsage || stdout != "" || stderr == "" {
			t.Errorf("tenant time-zone %q: exit %d stdout %q stderr %q; want exit %d", args, code, stdout, stderr, enqueueapp.ExitUsage)
		}
		if len(args) == 2 && !strings.Contains(stderr, "invalid time zone") {
			t.Errorf("tenant time-zone %q: stderr %q, want it to say the zone is invalid", args, stderr)
		}
	}
	if got, err := f.deps.Postgres.TenantByID(ctx, tn.ID); err != nil || got.TimeZone != tenantctx.DefaultTimeZone {
		t.Errorf("catalog row after refused zones: %+v, %v; want %s", got, err, tenantctx.DefaultTimeZone)
	}

	code, stdout, stderr := f.run(t, false, "tenant", "time-zone", "nosuch", "Europe/Berlin")
	if code != enqueueapp.ExitFailure || stdout != "" || !strings.Contains(stderr, "tenant nosuch not found") {
		t.Errorf("tenant time-zone of an unknown slug: exit %d stdout %q stderr %q; want exit %d saying it is not found", code, stdout, stderr, enqueueapp.ExitFailure)
	}

	if _, err := f.deps.Tenancy.RequestDeletion(ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = f.run(t, false, "tenant", "time-zone", "acme", "Europe/Berlin")
	if code != enqueueapp.ExitFailure || stdout != "" || !strings.Contains(stderr, "is being deleted") {
		t.Errorf("tenant time-zone of a tenant being deleted: exit %d stdout %q stderr %q; want exit %d saying it is being deleted", code, stdout, stderr, enqueueapp.ExitFailure)
	}
	if got, err := f.deps.Postgres.TenantByID(ctx, tn.ID); err != nil || got.TimeZone != tenantctx.DefaultTimeZone {
		t.Errorf("catalog row of a tenant being deleted after tenant time-zone: %+v, %v; want %s", got, err, tenantctx.DefaultTimeZone)
	}
}
