package enqueueapp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/enqueueapp"
)

// TestFlagMistakesGoToStderr: a mistyped flag (unknown, a bad value, a
// missing value) is a diagnostic: the flag package's message and the
// command's usage go to stderr with exit 2, and stdout, where the commands
// write their data (JSON a script pipes into jq, a table), stays empty.
// --help still prints the usage on stdout, exit 0.
func TestFlagMistakesGoToStderr(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"migrate", "--all", "--bogus"},
		{"migrate", "--all", "--timeout", "soon"},
		{"pdf", "--tenant", "acme", "--invoice", "x"},
		{"pdf", "--tenant"},
		{"queues", "--json=maybe"},
		{"serve", "--port", "8080"},
		{"--bogus"},
		{"dispatch-mode", "fair", "--force"},
		{"db", "list", "--json"},
		{"tenant", "add", "acme", "--bogus"},
		{"tenant", "move", "acme", "--to"},
	} {
		var stdout, stderr bytes.Buffer
		code := enqueueapp.Main(context.Background(), args, enqueueapp.IO{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }})
		if code != enqueueapp.ExitUsage || stdout.Len() != 0 || !strings.Contains(stderr.String(), "usage: enqueue") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2, nothing on stdout, the usage on stderr", args, code, stdout.String(), stderr.String())
		}
	}
	for _, args := range [][]string{{"migrate", "--help"}, {"tenant", "move", "-h"}, {"db", "list", "-h"}, {"queues", "-help"}} {
		var stdout, stderr bytes.Buffer
		code := enqueueapp.Main(context.Background(), args, enqueueapp.IO{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }})
		if code != enqueueapp.ExitOK || !strings.Contains(stdout.String(), "usage: enqueue") || stderr.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want the usage on stdout, exit 0", args, code, stdout.String(), stderr.String())
		}
	}
}

// TestTenantFlagsBeforeSlug: "tenant add --plan pro acme" and "tenant move
// --to eu2 acme" (flags first, as Go's flag package has them) work as the
// slug-first forms do, instead of a usage error that calls "--plan" an
// invalid tenant slug.
func TestTenantFlagsBeforeSlug(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	code, stdout, stderr := f.run(t, false, "tenant", "add", "--plan", "pro", "--name", "Acme Corp", "acme")
	if code != enqueueapp.ExitOK {
		t.Fatalf("tenant add --plan pro --name ... acme: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	var got struct{ ID, Slug string }
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || got.Slug != "acme" {
		t.Fatalf("tenant add: stdout %q (%v)", stdout, err)
	}
	tn, err := f.deps.Catalog.TenantByID(context.Background(), got.ID)
	if err != nil || tn.Plan != "pro" || tn.Name != "Acme Corp" {
		t.Fatalf("tenant added with flags first: %+v, %v; want plan pro, name Acme Corp", tn, err)
	}
	// Flags first, then the slug, then more flags: the move of acme is
	// tried (and refused: acme is still provisioning, no worker runs here).
	code, _, stderr = f.run(t, false, "tenant", "move", "--to", "nowhere", "acme", "--grace", "1s")
	if code != enqueueapp.ExitFailure || !strings.Contains(stderr, "tenant move acme:") || strings.Contains(stderr, "invalid tenant slug") {
		t.Fatalf("tenant move --to nowhere acme: exit %d stderr %q; want the move of acme tried", code, stderr)
	}
	// A slug given twice, or none, stays a usage error.
	for _, args := range [][]string{
		{"tenant", "add", "--plan", "pro"},
		{"tenant", "add", "acme", "globex"},
		{"tenant", "move", "--to", "eu2", "acme", "globex"},
	} {
		if code, _, stderr := f.run(t, false, args...); code != enqueueapp.ExitUsage {
			t.Errorf("%q: exit %d stderr %q, want %d (usage)", args, code, stderr, enqueueapp.ExitUsage)
		}
	}
}
