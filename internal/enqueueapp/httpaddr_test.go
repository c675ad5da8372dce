package enqueueapp_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/enqueueapp"
)

// TestRunBadAddrNamesTheVariable: an HTTP_ADDR (or --addr) the service
// cannot listen on for another reason than a busy port (no port, a port
// out of range) stops it with one line that names where the address came
// from, as the worker's does, not only the address: "listen on 30: ...
// missing port in address" left the operator to guess that 30 was
// HTTP_ADDR's value. Nothing is connected to first.
func TestRunBadAddrNamesTheVariable(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"30", ":99999", "[::1"} {
		e := map[string]string{"DATABASE_URL": "postgres://app@127.0.0.1:1/inv", "REDIS_URL": "redis://127.0.0.1:1", "HTTP_ADDR": addr}
		var stderr bytes.Buffer
		code := enqueueapp.Main(context.Background(), []string{"serve"}, enqueueapp.IO{
			Stdout: io.Discard, Stderr: &stderr, Getenv: getenv(e),
		})
		if code != enqueueapp.ExitFailure {
			t.Errorf("HTTP_ADDR=%s: exit %d", addr, code)
		}
		out := stderr.String()
		if strings.Count(out, "\n") != 1 || !strings.Contains(out, "HTTP_ADDR") || !strings.Contains(out, addr) {
			t.Errorf("HTTP_ADDR=%s: want one line naming HTTP_ADDR and its value, got %q", addr, out)
		}
	}
}
