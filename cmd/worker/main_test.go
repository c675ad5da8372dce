package main

import (
	"flag"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestRunRefusesStrayArguments: the worker takes flags only. A stray
// argument ("worker serve -concurrency 20", the enqueue binary's habit)
// ends flag parsing, so every flag after it would be ignored without a
// word; the worker refuses it instead, as the enqueue CLI and `worker -dev`
// do, before it reads the environment or connects anywhere.
func TestRunRefusesStrayArguments(t *testing.T) {
	for _, k := range []string{"DATABASE_URL", "REDIS_URL", "WORKER_CONCURRENCY", "DB_MAX_CONNS"} {
		t.Setenv(k, "")
	}
	for _, args := range [][]string{
		{"serve", "-concurrency", "20"},
		{"-concurrency", "20", "extra"},
	} {
		oldArgs, oldFlags := os.Args, flag.CommandLine
		os.Args = append([]string{"worker"}, args...)
		flag.CommandLine = flag.NewFlagSet("worker", flag.ContinueOnError)
		err := run(io.Discard)
		os.Args, flag.CommandLine = oldArgs, oldFlags
		if err == nil || !strings.Contains(err.Error(), "unexpected arguments") {
			t.Errorf("worker %s: got %v, want an error naming the unexpected arguments", strings.Join(args, " "), err)
		}
	}
}

// TestConcurrencyFlagErrorNamesTheFlag: a -concurrency out of range is
// reported as the flag, not as WORKER_CONCURRENCY, which the operator did
// not set.
func TestConcurrencyFlagErrorNamesTheFlag(t *testing.T) {
	for _, k := range []string{"REDIS_URL", "WORKER_CONCURRENCY", "DB_MAX_CONNS"} {
		t.Setenv(k, "")
	}
	t.Setenv("DATABASE_URL", "postgres://app@127.0.0.1:1/x")
	for _, n := range []string{"-5", "10001", "20000"} {
		oldArgs, oldFlags := os.Args, flag.CommandLine
		os.Args = []string{"worker", "-concurrency", n}
		flag.CommandLine = flag.NewFlagSet("worker", flag.ContinueOnError)
		err := run(io.Discard)
		os.Args, flag.CommandLine = oldArgs, oldFlags
		if err == nil || !strings.HasPrefix(err.Error(), "-concurrency: ") || strings.Contains(err.Error(), "WORKER_CONCURRENCY") {
			t.Errorf("worker -concurrency %s: got %v, want an error naming -concurrency alone", n, err)
		}
	}
}

// TestConcurrencyFlagZeroIsRefused: "-concurrency 0" is refused as
// WORKER_CONCURRENCY=0 is, not taken for "flag not given" (which runs the
// worker at WORKER_CONCURRENCY or the default without a word).
func TestConcurrencyFlagZeroIsRefused(t *testing.T) {
	for _, k := range []string{"REDIS_URL", "WORKER_CONCURRENCY", "DB_MAX_CONNS"} {
		t.Setenv(k, "")
	}
	// An unreachable database: a worker that got past the flag fails
	// there, with an error that does not name the flag.
	t.Setenv("DATABASE_URL", "postgres://app@127.0.0.1:1/x")
	oldArgs, oldFlags := os.Args, flag.CommandLine
	os.Args = []string{"worker", "-concurrency", "0"}
	flag.CommandLine = flag.NewFlagSet("worker", flag.ContinueOnError)
	err := run(io.Discard)
	os.Args, flag.CommandLine = oldArgs, oldFlags
	if err == nil || !strings.HasPrefix(err.Error(), "-concurrency: must be a positive integer") {
		t.Errorf("worker -concurrency 0: got %v, want an error naming -concurrency", err)
	}
}
