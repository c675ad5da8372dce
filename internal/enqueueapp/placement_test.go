package enqueueapp_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestDBAndTenantCommands: db add checks and registers a database, db
// list shows it with its tenant count and without its password, tenant
// add places tenants by choice and by load, and mistakes are usage errors.
func TestDBAndTenantCommands(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	url := testenv.Postgres(t)
	withPassword := strings.Replace(url, "postgres@", "postgres:s3cret@", 1)
	if withPassword == url {
		t.Fatalf("unexpected test URL form %s", url)
	}
	code, stdout, stderr := f.run(t, false, "db", "add", "eu2", withPassword)
	if code != enqueueapp.ExitOK || !strings.Contains(stdout, "registered tenant database eu2") || strings.Contains(stdout+stderr, "s3cret") {
		t.Fatalf("db add: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	if code, _, stderr := f.run(t, false, "db", "add", "eu2", url); code != enqueueapp.ExitFailure {
		t.Errorf("db add of a taken name: exit %d stderr %q", code, stderr)
	}
	add := func(args ...string) (string, string) {
		t.Helper()
		code, stdout, stderr := f.run(t, false, append([]string{"tenant", "add"}, args...)...)
		if code != enqueueapp.ExitOK {
			t.Fatalf("tenant add %q: exit %d stderr %q", args, code, stderr)
		}
		var got struct{ ID, Database string }
		if err := json.Unmarshal([]byte(stdout), &got); err != nil || got.ID == "" {
			t.Fatalf("tenant add %q: stdout %q (%v)", args, stdout, err)
		}
		return got.ID, got.Database
	}
	if _, db := add("acme", "--database", "eu2", "--plan", "pro"); db != "eu2" {
		t.Errorf("tenant add --database eu2 placed it on %q", db)
	}
	if _, db := add("globex"); db != "main" {
		t.Errorf("tenant add by load placed it on %q, want main (0 tenants against 1)", db)
	}
	if code, _, _ := f.run(t, false, "tenant", "add", "initech", "--database", "nowhere"); code != enqueueapp.ExitFailure {
		t.Errorf("tenant add on an unknown database: exit %d", code)
	}
	code, stdout, _ = f.run(t, false, "db", "list")
	if code != enqueueapp.ExitOK || strings.Contains(stdout, "s3cret") || !strings.Contains(stdout, "eu2") || !strings.Contains(stdout, "main") {
		t.Fatalf("db list: exit %d stdout %q", code, stdout)
	}
	for _, line := range strings.Split(stdout, "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 2 && (fields[0] == "eu2" || fields[0] == "main") && fields[1] != "1" {
			t.Errorf("db list line %q: want 1 tenant", line)
		}
	}
	for _, args := range [][]string{{"db"}, {"db", "add", "eu3"}, {"db", "list", "x"}, {"tenant"}, {"tenant", "move", "acme"}, {"tenant", "move", "../x", "--to", "eu2"}, {"tenant", "rename", "acme"}} {
		if code, _, _ := f.run(t, false, args...); code != enqueueapp.ExitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, enqueueapp.ExitUsage)
		}
	}
	// Moving needs an active tenant.
	if code, _, stderr := f.run(t, false, "tenant", "move", "globex", "--to", "eu2"); code != enqueueapp.ExitFailure || !strings.Contains(stderr, "provisioning") {
		t.Errorf("tenant move of a provisioning tenant: exit %d stderr %q", code, stderr)
	}
}
