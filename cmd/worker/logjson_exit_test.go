package main

import (
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestStartFailureIsAJSONRecord: with LOG_FORMAT=json, the reason the
// worker stops at start (here: Redis and PostgreSQL do not answer) is a JSON
// record on stderr, and main prints nothing more, so that every line the
// worker writes is a JSON object.
func TestStartFailureIsAJSONRecord(t *testing.T) {
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	t.Setenv("DATABASE_URL", "postgres://app:db-secret-pw@"+closed()+"/x?connect_timeout=1")
	t.Setenv("REDIS_URL", "redis://"+closed())
	t.Setenv("HTTP_ADDR", "127.0.0.1:0")
	t.Setenv("LOG_FORMAT", "json")
	oldArgs, oldFlags := os.Args, flag.CommandLine
	os.Args = []string{"worker"}
	flag.CommandLine = flag.NewFlagSet("worker", flag.ContinueOnError)
	defer func() { os.Args, flag.CommandLine = oldArgs, oldFlags }()

	var stderr testenv.LogBuffer
	err := run(io.Discard, &stderr)
	if err == nil {
		t.Fatal("the worker started without its database")
	}
	out := stderr.String()
	var reason bool
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		var rec map[string]any
		if line != "" && json.Unmarshal([]byte(line), &rec) == nil && rec["level"] == "ERROR" &&
			strings.Contains(line, "connect to ") {
			reason = true
		}
	}
	if !reason || !errors.Is(err, errLogged) {
		t.Errorf("the reason is not an ERROR record on stderr (main prints %q as plain text):\n%s", err, out)
	}
	if strings.Contains(out, "db-secret-pw") {
		t.Errorf("the database password is in the log:\n%s", out)
	}
}
