package enqueueapp_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/enqueueapp"
)

// TestInvalidDatabaseNameIsAMistake: a tenant database's name that no
// database can have ("EU2", "eu 2", a URL) given to db add, db remove,
// tenant add --database or tenant move --to is a command-line mistake, as
// an invalid slug or time zone is: exit 2, said before the configuration
// is read or anything is opened, stdout empty. It was exit 1, after the
// backend was opened (and for tenant move, after the move had taken the
// tenant's lock, printing its progress and "failed").
func TestInvalidDatabaseNameIsAMistake(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"db", "add", "EU2", "postgres://app@db2.internal:5432/invoicing"},
		{"db", "remove", "eu 2"},
		{"tenant", "add", "acme", "--database", "EU2"},
		{"tenant", "move", "acme", "--to", "EU2"},
		{"tenant", "move", "acme", "--to", "postgres://app@db2.internal:5432/invoicing"},
	} {
		var stdout, stderr bytes.Buffer
		code := enqueueapp.Main(context.Background(), args, enqueueapp.IO{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }})
		if code != enqueueapp.ExitUsage || stdout.Len() != 0 || !strings.Contains(stderr.String(), "invalid tenant database name") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 naming the invalid database name, nothing on stdout", args, code, stdout.String(), stderr.String())
		}
	}
}
