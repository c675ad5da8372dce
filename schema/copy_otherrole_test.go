package schema

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestDropSourceDeadlockWithAnotherRolesWrite: the application writes the
// tenant's tables with a role of its own, one the copy's role may not
// cancel (pg_cancel_backend refuses: "permission denied to cancel query").
// A transaction of it that read a table and then waits to write it
// deadlocks with DropSource's DROP. The write must not commit into the old
// schema, which nobody reads after the switch.
func TestDropSourceDeadlockWithAnotherRolesWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srcURL := testenv.PostgresAs(t, true)
	appURL := otherRoleOn(t, srcURL)
	const schemaName, name = "tenant_acme", "written after the switch"
	src, _ := newTestPool(t, srcURL, 0, nil)
	migrateTenant(t, src, schemaName)
	for _, stmt := range []string{
		"GRANT USAGE ON SCHEMA " + schemaName + " TO " + roleOf(t, appURL),
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA " + schemaName + " TO " + roleOf(t, appURL),
		"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA " + schemaName + " TO " + roleOf(t, appURL),
	} {
		if _, err := src.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	t.Cleanup(func() { // the grants would keep the application's role from being dropped
		if _, err := src.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schemaName+" CASCADE"); err != nil {
			t.Errorf("drop the old schema: %v", err)
		}
	})
	w := startWaitedWriteAs(t, src, appURL, testenv.PostgresAs(t, true), schemaName, name)
	derr := w.copied.DropSource(ctx)
	werr := <-w.wrote
	var inSource int
	_ = src.QueryRow(ctx, "SELECT count(*) FROM "+schemaName+".customers WHERE name = $1", name).Scan(&inSource)
	if werr == nil || inSource != 0 || !strings.Contains(werr.Error(), movedMessage) {
		t.Errorf("DropSource: %v; the write of another role that waited for the copy: committed %v (err %v), %d rows of it in the old schema; "+
			"want the write failed, saying the schema moved", derr, werr == nil, werr, inSource)
	}
	if derr == nil || !strings.Contains(derr.Error(), "drop it by hand") {
		t.Errorf("DropSource: %v; want an error saying the old schema is left to drop by hand", derr)
	}
}

// otherRoleOn returns a URL of databaseURL's database for another
// non-superuser role (one of testenv.PostgresAs, which may connect to any
// database).
func otherRoleOn(t *testing.T, databaseURL string) string {
	t.Helper()
	other, err := url.Parse(testenv.PostgresAs(t, false))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	other.Path = u.Path
	return other.String()
}

// roleOf returns the quoted role name of databaseURL.
func roleOf(t *testing.T, databaseURL string) string {
	t.Helper()
	u, err := url.Parse(databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	return pgx.Identifier{u.User.Username()}.Sanitize()
}
