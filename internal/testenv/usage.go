package testenv

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisUsage is what a redis-server has done so far, from INFO: the CPU
// time it used (user + system) and the commands it ran, those that scripts
// called included. Benchmarks take it before and after their work and
// report the difference per task.
type RedisUsage struct {
	CPU      time.Duration
	Commands int64
}

// Sub returns u - o.
func (u RedisUsage) Sub(o RedisUsage) RedisUsage {
	return RedisUsage{CPU: u.CPU - o.CPU, Commands: u.Commands - o.Commands}
}

// ReadRedisUsage reads rdb's server's RedisUsage (two INFO calls, counted
// in Commands).
func ReadRedisUsage(t testing.TB, rdb redis.UniversalClient) RedisUsage {
	t.Helper()
	ctx := context.Background()
	cpu, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		t.Fatalf("redis INFO cpu: %v", err)
	}
	stats, err := rdb.Info(ctx, "stats").Result()
	if err != nil {
		t.Fatalf("redis INFO stats: %v", err)
	}
	secs := infoField(cpu, "used_cpu_user") + infoField(cpu, "used_cpu_sys")
	return RedisUsage{CPU: time.Duration(secs * float64(time.Second)), Commands: int64(infoField(stats, "total_commands_processed"))}
}

// infoField is the number INFO's text gives field, 0 when it has none.
func infoField(info, field string) float64 {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// ProcessCPU is the CPU time (user + system) this process has used: the
// Go side of a benchmark that runs its clients and servers in-process.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
