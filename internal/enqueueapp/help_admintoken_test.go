package enqueueapp_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/enqueueapp"
)

// TestHelpStatesTheAdminTokenMinimumInBytes: "enqueue help" gives
// ADMIN_TOKEN's minimum as the configuration checks it, in bytes: a token
// of 16 two-byte characters (32 bytes) is accepted.
func TestHelpStatesTheAdminTokenMinimumInBytes(t *testing.T) {
	t.Parallel()
	token := strings.Repeat("é", config.MinAdminTokenLen/2)
	e := map[string]string{"DATABASE_URL": "postgres://app@127.0.0.1:5432/invoicing", "ADMIN_TOKEN": token}
	if _, err := config.FromEnv(getenv(e)); err != nil {
		t.Fatalf("a token of %d bytes in %d characters: %v", len(token), config.MinAdminTokenLen/2, err)
	}
	var stdout, stderr bytes.Buffer
	code := enqueueapp.Main(context.Background(), []string{"help"}, enqueueapp.IO{
		Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" },
	})
	out := strings.Join(strings.Fields(stdout.String()), " ")
	want := fmt.Sprintf("ADMIN_TOKEN (at least %d bytes", config.MinAdminTokenLen)
	if code != enqueueapp.ExitOK || !strings.Contains(out, want) {
		t.Errorf("enqueue help: exit %d, want %q in:\n%s", code, want, stdout.String())
	}
}
