package enqueueapp_test

import (
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/enqueueapp"
)

// TestDBAddURLThatDoesNotParseHidesPassword: `enqueue db add NAME URL`
// with a connection string that does not parse is refused without quoting
// any of its password. pgx's parse error quotes the string with the
// password masked as best it can, and a keyword/value string whose quoted
// password is not closed keeps the rest of the password after its first
// space (as TENANT_DATABASES, checked without pgx's error, does not).
func TestDBAddURLThatDoesNotParseHidesPassword(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, dsn := range []string{
		"host=db2.internal dbname=invoicing user=app password='correct horse",
		"postgres://app:correct@db2.internal:notaport/invoicing",
	} {
		code, stdout, stderr := f.run(t, false, "db", "add", "eu2", dsn)
		if code != enqueueapp.ExitFailure {
			t.Errorf("db add with a URL that does not parse: exit %d, want %d", code, enqueueapp.ExitFailure)
		}
		if strings.Contains(stdout+stderr, "horse") || strings.Contains(stdout+stderr, "correct") {
			t.Errorf("db add with a URL that does not parse: the output quotes its password: %q", stderr)
		}
	}
}
