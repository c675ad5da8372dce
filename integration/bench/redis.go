package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/invoicing/tenantworker/internal/redisserver"
)

// redisServerPath is the redis-server binary the command prefers; without
// it, the one on PATH.
const redisServerPath = "/usr/bin/redis-server"

// startRedis starts redis-server without persistence on a free loopback
// port with its files in dir, and waits until it answers PING.
func startRedis(ctx context.Context, dir string) (*redisserver.Server, error) {
	opts := redisserver.Options{Dir: dir}
	if _, err := os.Stat(redisServerPath); err == nil {
		opts.Bin = redisServerPath
	}
	srv, err := redisserver.Start(ctx, opts)
	if errors.Is(err, redisserver.ErrNotInstalled) {
		return nil, fmt.Errorf("redis-server not found at %s or in PATH; install it or set REDIS_URL", redisServerPath)
	}
	return srv, err
}

// errEmptyOnly is returned when REDIS_URL points at a database with keys.
var errEmptyOnly = errors.New("the Redis database at REDIS_URL is not empty; the benchmark flushes it between scenarios, so give it an empty one (e.g. another /DB number)")
