package testenv_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestCountCommandsCountsEveryCommandSent: CountCommands counts a command
// sent alone as one and a pipeline as its commands, and passes each on.
// (Through a real client it also counts what a new connection sends to
// set itself up, HELLO and CLIENT SETINFO: tests compare counts taken
// around the calls they check.)
func TestCountCommandsCountsEveryCommandSent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sent := &testenv.CountCommands{}
	if n := sent.Sent(); n != 0 {
		t.Fatalf("a new hook counted %d commands", n)
	}
	passed := 0
	process := sent.ProcessHook(func(context.Context, redis.Cmder) error { passed++; return nil })
	pipeline := sent.ProcessPipelineHook(func(_ context.Context, cmds []redis.Cmder) error { passed += len(cmds); return nil })
	if err := process(ctx, redis.NewStatusCmd(ctx, "set", "k", "v")); err != nil {
		t.Fatal(err)
	}
	if n := sent.Sent(); n != 1 || passed != 1 {
		t.Errorf("after one SET: %d counted, %d passed on, want 1 and 1", n, passed)
	}
	if err := pipeline(ctx, []redis.Cmder{redis.NewStringCmd(ctx, "get", "k"), redis.NewIntCmd(ctx, "incr", "n"), redis.NewIntCmd(ctx, "del", "k")}); err != nil {
		t.Fatal(err)
	}
	if n := sent.Sent(); n != 4 || passed != 4 {
		t.Errorf("after a pipeline of three: %d counted, %d passed on, want 4 and 4", n, passed)
	}
}
