package enqueueapp_test

import (
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/enqueueapp"
)

// TestDatabaseArgumentThatIsAURLIsNotEchoed: a URL given where a tenant
// database's name goes (db add with its two arguments swapped, tenant
// add --database or tenant move --to given the URL) is refused without
// quoting it: its password would go to stderr, the terminal's scrollback
// and whatever records the operator's session.
func TestDatabaseArgumentThatIsAURLIsNotEchoed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.provision(t, "globex")
	const secret = "s3cretPW"
	url := "postgres://app:" + secret + "@db2.internal:5432/invoicing"
	for _, args := range [][]string{
		{"db", "add", url, "eu2"},
		{"tenant", "add", "acme", "--database", url},
		{"tenant", "move", "globex", "--to", url},
	} {
		code, stdout, stderr := f.run(t, false, args...)
		if code == enqueueapp.ExitOK {
			t.Errorf("%s %s with a URL for a name: exit 0", args[0], args[1])
		}
		if strings.Contains(stdout+stderr, secret) {
			t.Errorf("%s %s with a URL for a name: the output quotes its password: %q", args[0], args[1], stderr)
		}
	}
}
