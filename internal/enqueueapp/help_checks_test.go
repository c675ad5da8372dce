package enqueueapp_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/enqueueapp"
)

// TestDoubleDashH: "--h" asks for help wherever the flag package and
// Main take it (enqueue --h, migrate --h), also for tenant and db.
func TestDoubleDashH(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--h"}, {"migrate", "--h"}, {"tenant", "--h"}, {"tenant", "move", "--h"}, {"tenant", "add", "--h"}, {"tenant", "time-zone", "--h"}, {"db", "--h"}} {
		var stdout, stderr bytes.Buffer
		code := enqueueapp.Main(context.Background(), args, enqueueapp.IO{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }})
		if code != enqueueapp.ExitOK || !strings.Contains(stdout.String(), "usage: enqueue") {
			t.Errorf("%q: exit %d stdout %q stderr %q", args, code, stdout.String(), stderr.String())
		}
	}
}
