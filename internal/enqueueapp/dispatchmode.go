package enqueueapp

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/backend"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/tasks"
)

// dispatchModeCmd is "enqueue dispatch-mode [fair|plain]": without an
// argument it prints the dispatch mode the Redis records (fair.ClaimMode:
// the first process to start records its FAIR_DISPATCH, and a process
// with the other setting refuses to start); with one it records that mode
// (fair.Dispatcher.SwitchMode), refusing to switch to plain while fair
// dispatch still holds work or a fair worker runs. It opens Redis only, so
// that it works while the processes' settings disagree.
func dispatchModeCmd(ctx context.Context, args []string, sio IO) error {
	fs := flagSet("dispatch-mode", "dispatch-mode [fair|plain]", sio)
	var to fair.Mode
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		m, err := fair.ParseMode(args[0])
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		to, args = m, args[1:]
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, _, err := loadConfig(sio)
	if err != nil {
		return err
	}
	if _, err := backend.Layout(cfg); err != nil {
		return err
	}
	rdb, closeRedis, err := cliRedis(ctx, cfg, sio)
	if err != nil {
		return err
	}
	defer closeRedis()

	if to == "" {
		m, err := fair.RecordedMode(ctx, rdb)
		if err != nil {
			return err
		}
		if m == "" {
			fmt.Fprintln(sio.Stdout, "none recorded: the next process to start records its FAIR_DISPATCH")
			return nil
		}
		fmt.Fprintf(sio.Stdout, "%s (%s)\n", m, m.Setting())
		return nil
	}
	// Every shard there can be, not only this configuration's: run with a
	// smaller QUEUE_SHARDS_SERVED than the fleet's, the command would let
	// a switch to plain strand the tasks waiting in the other shards.
	all, err := tasks.NewLayout(tasks.MaxQueueShards, tasks.MaxQueueShards)
	if err != nil {
		return err
	}
	from, err := fair.New(rdb, fair.Config{}).SwitchMode(ctx, to, all.Queues()...)
	if err != nil {
		return err
	}
	switch from {
	case to:
		fmt.Fprintf(sio.Stdout, "%s already (%s)\n", to, to.Setting())
	case "":
		fmt.Fprintf(sio.Stdout, "recorded %s: start every process with %s\n", to, to.Setting())
	default:
		fmt.Fprintf(sio.Stdout, "switched from %s to %s: start every process with %s\n", from, to, to.Setting())
	}
	return nil
}

// cliRedis opens REDIS_URL (or the test backend's Redis) for a command
// that needs nothing else.
func cliRedis(ctx context.Context, cfg config.Config, sio IO) (redis.UniversalClient, func(), error) {
	if b := sio.Options.Backend; b != nil {
		return b.Redis, func() {}, nil
	}
	_, rdb, err := backend.OpenRedis(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return rdb, func() { _ = rdb.Close() }, nil
}
