package enqueueapp_test

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// TestServeFailureIsAJSONRecord: with LOG_FORMAT=json, the reason the
// service stops at start (here: Redis and PostgreSQL do not answer) is a JSON
// record like every other line on stderr, on one line, not plain text
// spread over several lines that a log pipeline reading JSON drops.
func TestServeFailureIsAJSONRecord(t *testing.T) {
	var stderr testenv.LogBuffer
	vars := map[string]string{
		"DATABASE_URL": "postgres://app:db-secret-pw@" + closedPort(t) + "/x?connect_timeout=1",
		"REDIS_URL":    "redis://" + closedPort(t),
		"HTTP_ADDR":    "127.0.0.1:0",
		"ADMIN_TOKEN":  strings.Repeat("t", 40),
		"LOG_FORMAT":   "json",
	}
	code := enqueueapp.Main(context.Background(), []string{"serve"}, enqueueapp.IO{
		Stdout: &testenv.LogBuffer{}, Stderr: &stderr, Getenv: func(k string) string { return vars[k] },
	})
	if code != enqueueapp.ExitFailure {
		t.Errorf("exit code %d, want %d", code, enqueueapp.ExitFailure)
	}
	out := stderr.String()
	var reason bool
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("stderr line is not a JSON record: %q", line)
			continue
		}
		if rec["level"] == "ERROR" && strings.Contains(line, "connect to ") {
			reason = true
		}
	}
	if !reason {
		t.Errorf("no ERROR record with the reason:\n%s", out)
	}
	if strings.Contains(out, "db-secret-pw") {
		t.Errorf("the database password is in the log:\n%s", out)
	}
}
