package httpapi_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
)

// TestRedisFailingToSaveIs503: a Redis with save points whose last
// background save failed (a full or vanished disk) refuses every write with
// "MISCONF Redis is configured to save RDB snapshots, but it's currently
// unable to persist to disk" (stop-writes-on-bgsave-error, on by default)
// and answers PING, until a save succeeds or an operator turns that off: a
// refusal for now, as READONLY, so an enqueue answers 503 with Retry-After,
// not 500, and /readyz says Redis is unavailable. Here the save fails
// because Redis's working directory is removed.
func TestRedisFailingToSaveIs503(t *testing.T) {
	t.Parallel()
	misconf := redisRefusal{reply: "MISCONF ",
		refuse: func(ctx context.Context, rdb *redis.Client) error {
			dir, err := rdb.ConfigGet(ctx, "dir").Result()
			if err != nil {
				return err
			}
			if err := os.RemoveAll(dir["dir"]); err != nil {
				return err
			}
			if err := rdb.ConfigSet(ctx, "save", "3600 1").Err(); err != nil {
				return err
			}
			if err := rdb.BgSave(ctx).Err(); err != nil {
				return err
			}
			for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if v, err := rdb.Info(ctx, "persistence").Result(); err == nil && containsLine(v, "rdb_last_bgsave_status:err") {
					return nil
				}
			}
			return errors.New("the background save did not fail within a minute")
		},
		allow: func(ctx context.Context, rdb *redis.Client) error {
			if err := rdb.ConfigSet(ctx, "save", "").Err(); err != nil {
				return err
			}
			return rdb.ConfigSet(ctx, "stop-writes-on-bgsave-error", "no").Err()
		}}
	t.Run("fair", func(t *testing.T) {
		t.Parallel()
		redisRefusingWrites(t, &fair.Config{MinPending: 1}, misconf)
	})
	t.Run("asynq", func(t *testing.T) {
		t.Parallel()
		redisRefusingWrites(t, nil, misconf)
	})
}

// containsLine reports whether text (Redis's INFO) has the line line.
func containsLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimSuffix(l, "\r") == line {
			return true
		}
	}
	return false
}
