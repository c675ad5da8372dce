package enqueueapp_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
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

	// db remove: refused for a database holding tenants, main and an
	// unknown name; an empty one goes, and leaves db list.
	if code, _, stderr := f.run(t, false, "db", "add", "eu9", url); code != enqueueapp.ExitOK {
		t.Fatalf("db add eu9: exit %d stderr %q", code, stderr)
	}
	for _, name := range []string{"eu2", "main", "nowhere"} {
		if code, _, stderr := f.run(t, false, "db", "remove", name); code != enqueueapp.ExitFailure {
			t.Errorf("db remove %s: exit %d stderr %q, want failure", name, code, stderr)
		}
	}
	if code, _, stderr := f.run(t, false, "db", "remove", "eu2"); !strings.Contains(stderr, "1 tenants are placed there") {
		t.Errorf("db remove of a database holding a tenant: exit %d stderr %q, want the count", code, stderr)
	}
	if code, stdout, stderr := f.run(t, false, "db", "remove", "eu9"); code != enqueueapp.ExitOK || !strings.Contains(stdout, "removed tenant database eu9") {
		t.Fatalf("db remove eu9: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	if _, stdout, _ := f.run(t, false, "db", "list"); strings.Contains(stdout, "eu9") {
		t.Errorf("db list after the removal still shows eu9:\n%s", stdout)
	}
	for _, args := range [][]string{{"db", "remove"}, {"db", "remove", "a", "b"}} {
		if code, _, _ := f.run(t, false, args...); code != enqueueapp.ExitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, enqueueapp.ExitUsage)
		}
	}

	// A password given as a query parameter (as libpq and pgx read it) is
	// a password too: neither db add nor db list prints it.
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	code, stdout, stderr = f.run(t, false, "db", "add", "eu5", url+sep+"password=qu3ry")
	if code != enqueueapp.ExitOK || strings.Contains(stdout+stderr, "qu3ry") {
		t.Errorf("db add with the password in the query: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	if code, stdout, _ := f.run(t, false, "db", "list"); code != enqueueapp.ExitOK || !strings.Contains(stdout, "eu5") || strings.Contains(stdout, "qu3ry") {
		t.Errorf("db list: exit %d stdout %q", code, stdout)
	}
}

// TestQueuesCommand: "enqueue queues" prints every queue's backlogs with
// the largest by tenant slug, as a table and as the admin route's JSON;
// mistakes are usage errors.
func TestQueuesCommand(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	acme, globex := f.provision(t, "acme"), f.provision(t, "globex")
	for _, tn := range []tenantctx.Tenant{acme, globex} {
		if _, err := f.deps.Catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
			t.Fatal(err)
		}
	}
	var ps []tasks.Payload
	for i := range 12 {
		ps = append(ps, tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: int64(i + 1)})
	}
	if _, err := f.deps.Enqueuer.EnqueueMany(ctx, acme.ID, ps); err != nil {
		t.Fatal(err)
	}
	if _, err := f.deps.Enqueuer.Enqueue(ctx, tasks.InvoicePDF{TenantID: globex.ID, InvoiceID: 1}); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := f.run(t, false, "queues", "--json", "--top", "1")
	if code != enqueueapp.ExitOK {
		t.Fatalf("queues --json: exit %d stderr %q", code, stderr)
	}
	var got struct {
		Queues []fair.Overview `json:"queues"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("queues --json: %q: %v", stdout, err)
	}
	want, err := f.deps.Tenancy.Queues(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Queues, want) {
		t.Fatalf("queues --json %+v, want %+v", got.Queues, want)
	}
	var def fair.Overview
	for _, o := range want {
		if o.Queue == tasks.QueueDefault {
			def = o
		}
	}
	if def.Waiting+def.Admitted != 13 || len(def.Top) != 1 || def.Top[0].TenantID != acme.ID {
		t.Fatalf("default's overview %+v: want the 13 renders, acme's backlog the largest", def)
	}

	code, stdout, stderr = f.run(t, false, "queues")
	if code != enqueueapp.ExitOK {
		t.Fatalf("queues: exit %d stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 1+len(tasks.Queues) || !strings.HasPrefix(lines[0], "QUEUE") {
		t.Fatalf("queues table:\n%s", stdout)
	}
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if f[0] != tasks.QueueDefault {
			continue
		}
		if f[1] != strconv.Itoa(def.Waiting) || f[3] != strconv.Itoa(def.Admitted) || !strings.Contains(line, "acme "+strconv.Itoa(def.Top[0].Waiting)) {
			t.Errorf("default's row %q: want %d waiting, %d admitted, acme's backlog by slug", line, def.Waiting, def.Admitted)
		}
	}
	for _, args := range [][]string{{"queues", "--top", "0"}, {"queues", "--top", "101"}, {"queues", "extra"}} {
		if code, _, _ := f.run(t, false, args...); code != enqueueapp.ExitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, enqueueapp.ExitUsage)
		}
	}
}
