package enqueueapp_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/enqueueapp"
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
