package workerapp

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestPlainModeLostWithRedisDataIsRecordedAgain: a Redis that lost its
// data (restarted without persistence, flushed) lost the dispatch mode a
// worker with FAIR_DISPATCH=false recorded at its start; the worker
// records it again, as fair workers record theirs when they find the
// loss, so a process with FAIR_DISPATCH=true started afterwards is still
// refused instead of recording its mode beside the running plain workers
// (and making each of them refuse to start at its next restart).
func TestPlainModeLostWithRedisDataIsRecordedAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	redisURL := testenv.RedisURL(t)
	startWorker(t, redisURL, map[string]string{"FAIR_DISPATCH": "false", "SCHEDULER_ENABLED": "false"})
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	if m, err := fair.RecordedMode(ctx, rdb); err != nil || m != fair.ModePlain {
		t.Fatalf("recorded mode at the start = %q, %v; want plain", m, err)
	}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// A bound for the failure message: the worker records its mode again
	// within modeKeepInterval.
	testenv.WaitFor(t, 4*modeKeepInterval, "the plain mode recorded again after the loss", func() bool {
		m, err := fair.RecordedMode(ctx, rdb)
		return err == nil && m == fair.ModePlain
	})
	if err := fair.ClaimMode(ctx, rdb, fair.ModeFair); !errors.Is(err, fair.ErrModeMismatch) {
		t.Fatalf("a fair process starting after the loss: ClaimMode(fair) = %v, want ErrModeMismatch", err)
	}
}
