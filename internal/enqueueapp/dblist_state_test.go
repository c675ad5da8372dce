package enqueueapp_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestDBListShowsWhetherEachDatabaseIsUsable: "db list" checks each
// database on the spot, as "db add" does, and shows its state in a last
// column: usable; unusable with the reason and the grant (here a role
// whose CREATE was revoked after its db add); unreachable with the reason
// (a server that does not answer). The tenant counts stay in the second
// column, and no password is printed.
func TestDBListShowsWhetherEachDatabaseIsUsable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	f.provision(t, "acme") // on main, the only database yet
	// DATABASE_URL is a superuser's.
	admin, err := pgx.Connect(ctx, f.env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close(ctx) }()
	owner, revoked := testenv.PostgresAs(t, true), testenv.PostgresAs(t, false)
	u, err := url.Parse(revoked)
	if err != nil {
		t.Fatal(err)
	}
	grant := " ON DATABASE " + pgx.Identifier{u.Path[1:]}.Sanitize() + " "
	role := pgx.Identifier{u.User.Username()}.Sanitize()
	if _, err := admin.Exec(ctx, "GRANT CREATE"+grant+"TO "+role); err != nil {
		t.Fatal(err)
	}
	for name, dsn := range map[string]string{"eu2": owner, "eu3": revoked} {
		if code, _, stderr := f.run(t, false, "db", "add", name, dsn); code != enqueueapp.ExitOK {
			t.Fatalf("db add %s: exit %d stderr %q", name, code, stderr)
		}
	}
	if _, err := admin.Exec(ctx, "REVOKE CREATE"+grant+"FROM "+role); err != nil {
		t.Fatal(err)
	}
	if _, err := f.deps.Catalog.AddDatabase(ctx, "gone", "postgres://app:g0ne-s3cret@127.0.0.1:1/invoicing?connect_timeout=5"); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := f.run(t, false, "db", "list")
	if code != enqueueapp.ExitOK {
		t.Fatalf("db list: exit %d stderr %q", code, stderr)
	}
	t.Logf("db list:\n%s", stdout)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasSuffix(strings.TrimSpace(lines[0]), "STATE") {
		t.Fatalf("db list:\n%s\nwant a header ending in STATE and 4 databases", stdout)
	}
	want := map[string][]string{
		"main": {"1", "usable"},
		"eu2":  {"0", "usable"},
		"eu3":  {"0", "unusable: role ", "may not create schemas", "GRANT CREATE ON DATABASE"},
		"gone": {"0", "unreachable: ", "could not connect"},
	}
	for _, line := range lines[1:] {
		fields := strings.Fields(line)
		w, ok := want[fields[0]]
		if !ok {
			t.Errorf("db list line %q: unknown database", line)
			continue
		}
		delete(want, fields[0])
		if fields[1] != w[0] {
			t.Errorf("db list line %q: want %s tenants", line, w[0])
		}
		if w[1] == "usable" && fields[len(fields)-1] != "usable" {
			t.Errorf("db list line %q: want it usable", line)
		}
		for _, s := range w[1:] {
			if !strings.Contains(line, "  "+w[1]) || !strings.Contains(line, s) {
				t.Errorf("db list line %q: state lacks %q", line, s)
			}
		}
	}
	if len(want) != 0 {
		t.Errorf("db list lacks %v:\n%s", want, stdout)
	}
	secrets := []string{"g0ne-s3cret"}
	for _, dsn := range []string{owner, revoked} {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := u.User.Password()
		secrets = append(secrets, p)
	}
	for _, s := range secrets {
		if strings.Contains(stdout+stderr, s) {
			t.Errorf("db list prints a password:\n%s", stdout)
		}
	}
}
