package main

import (
	"flag"
	"io"
	"os"
	"strings"
	"testing"
)

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
