package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/testenv"
)

func TestMain(m *testing.M) {
	// Run as the worker binary itself: TestCommandLineHelpAndMistakes
	// starts this test binary again with its arguments, so that it sees
	// main's real exit codes and output streams.
	if os.Getenv("TENANTWORKER_TEST_RUN_MAIN") == "1" {
		flag.CommandLine = flag.NewFlagSet(os.Args[0], flag.ExitOnError)
		main()
		os.Exit(0)
	}
	os.Exit(testenv.Main(m))
}

// TestCommandLineHelpAndMistakes: the worker's command line behaves as
// the enqueue CLI's (README, "HTTP API"): -h and --help print the usage on
// stdout and exit 0 (so `worker -h | less` shows it), also with -dev
// (-dev=TRUE, -dev=t too: any value package flag reads as true); a
// mistake (a mistyped flag, a stray argument, a flag without its value)
// goes to stderr and exits 2, leaving stdout empty. Nothing here reads
// the environment's servers: each case ends before the worker connects.
func TestCommandLineHelpAndMistakes(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args       []string
		wantCode   int
		wantStdout string // "" means stdout must be empty
		wantStderr string // "" means stderr must be empty
	}{
		{[]string{"-h"}, 0, "-concurrency N", ""},
		{[]string{"--help"}, 0, "-http-addr", ""},
		{[]string{"-dev", "-h"}, 0, "usage: worker -dev", ""},
		{[]string{"-dev", "--help"}, 0, "-data-dir", ""},
		// -dev=TRUE is -dev, as package flag reads it: before, the
		// production worker took it for its own ignored -dev.
		{[]string{"-dev=TRUE", "-h"}, 0, "-data-dir", ""},
		{[]string{"-http-addr", ":0", "-dev=t", "-h"}, 0, "-data-dir", ""},
		{[]string{"-dev=yes"}, 2, "", "invalid boolean value \"yes\" for -dev"},
		{[]string{"--bogus"}, 2, "", "flag provided but not defined: -bogus"},
		{[]string{"serve"}, 2, "", `unexpected arguments ["serve"]`},
		{[]string{"-concurrency", "4", "extra"}, 2, "", `unexpected arguments ["extra"]`},
		{[]string{"-concurrency", "abc"}, 2, "", "invalid value \"abc\" for flag -concurrency"},
		// A value the flag reads but the worker refuses is a mistake on
		// the command line too, as the enqueue CLI's --invoice 0 is: exit
		// 2, not 1 (a failure to run).
		{[]string{"-concurrency", "0"}, 2, "", "-concurrency: must be a positive integer, got 0"},
		{[]string{"-concurrency", "-5"}, 2, "", "-concurrency: must be a positive integer, got -5"},
		{[]string{"-concurrency", "20000"}, 2, "", "-concurrency: at most 10000, got 20000"},
		{[]string{"-http-addr"}, 2, "", "flag needs an argument: -http-addr"},
		{[]string{"-dev", "-nope"}, 2, "", "flag provided but not defined: -nope"},
		{[]string{"-dev", "extra"}, 2, "", `unexpected arguments ["extra"]`},
	}
	for _, tt := range tests {
		cmd := exec.Command(exe, tt.args...)
		cmd.Env = append(os.Environ(), "TENANTWORKER_TEST_RUN_MAIN=1",
			"DATABASE_URL=", "REDIS_URL=", "WORKER_CONCURRENCY=", "DB_MAX_CONNS=")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			code = exitErr.ExitCode()
		} else if err != nil {
			t.Fatalf("worker %s: %v", strings.Join(tt.args, " "), err)
		}
		name := "worker " + strings.Join(tt.args, " ")
		if code != tt.wantCode {
			t.Errorf("%s: exit %d, want %d (stderr %q)", name, code, tt.wantCode, stderr.String())
		}
		if tt.wantStdout == "" && stdout.Len() != 0 || !strings.Contains(stdout.String(), tt.wantStdout) {
			t.Errorf("%s: stdout %q, want %s", name, stdout.String(), orEmpty(tt.wantStdout))
		}
		if tt.wantStderr == "" && stderr.Len() != 0 || !strings.Contains(stderr.String(), tt.wantStderr) {
			t.Errorf("%s: stderr %q, want %s", name, stderr.String(), orEmpty(tt.wantStderr))
		}
	}
}

func orEmpty(want string) string {
	if want == "" {
		return "nothing"
	}
	return "it to hold " + fmt.Sprintf("%q", want)
}

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
		err := run(io.Discard, io.Discard)
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
		err := run(io.Discard, io.Discard)
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
	err := run(io.Discard, io.Discard)
	os.Args, flag.CommandLine = oldArgs, oldFlags
	if err == nil || !strings.HasPrefix(err.Error(), "-concurrency: must be a positive integer") {
		t.Errorf("worker -concurrency 0: got %v, want an error naming -concurrency", err)
	}
}
