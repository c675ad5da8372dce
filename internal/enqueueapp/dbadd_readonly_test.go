package enqueueapp_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestDBAddRefusesADatabaseThatTakesNoWrites: "db add" of a database
// whose server answers but takes no writes (a replica's URL given by
// mistake, a database set default_transaction_read_only) fails, saying it
// takes no writes and to register a primary, and registers nothing:
// registered, it would take new tenants placed by load, and their work
// would wait for as long as it stays so. One registered anyway (before
// it was set read-only) is "read-only" in "db list", not "unreachable".
func TestDBAddRefusesADatabaseThatTakesNoWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	dsn := testenv.Postgres(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{conn.Config().Database}.Sanitize()+
		" SET default_transaction_read_only = on"); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)

	code, stdout, stderr := f.run(t, false, "db", "add", "replica", dsn)
	if code != enqueueapp.ExitFailure || !strings.Contains(stderr, "takes no writes") || !strings.Contains(stderr, "register a primary") {
		t.Fatalf("db add of a database that takes no writes: exit %d stdout %q stderr %q; want exit 1 saying it takes no writes", code, stdout, stderr)
	}
	if _, list, _ := f.run(t, false, "db", "list"); strings.Contains(list, "replica") {
		t.Fatalf("db list after the refused db add shows replica:\n%s", list)
	}

	if _, err := f.deps.Catalog.AddDatabase(ctx, "replica", dsn); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = f.run(t, false, "db", "list")
	if code != enqueueapp.ExitOK {
		t.Fatalf("db list: exit %d stderr %q", code, stderr)
	}
	for line := range strings.SplitSeq(stdout, "\n") {
		if strings.HasPrefix(line, "replica ") && !strings.Contains(line, "  read-only: ") {
			t.Errorf("db list line %q: want its state read-only", line)
		}
	}
}
