package enqueueapp_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestPlainModeLostWithRedisDataIsRecordedAgainByTheEnqueueService: an
// enqueue service with FAIR_DISPATCH=false running with no worker (the
// workers stopped for a rollout) records its dispatch mode again after
// Redis lost its data, as plain workers do, so a process with
// FAIR_DISPATCH=true started afterwards is refused instead of recording
// its mode beside the running service (which would then refuse to start
// at its next restart).
func TestPlainModeLostWithRedisDataIsRecordedAgainByTheEnqueueService(t *testing.T) {
	t.Parallel()
	e := env(t)
	e["FAIR_DISPATCH"] = "false"
	cfg, err := config.FromEnv(getenv(e))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- enqueueapp.RunWith(ctx, cfg, quietLogger(), enqueueapp.Options{
			Listener: ln, Ready: func(a net.Addr) { ready <- a },
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run after cancel: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run returned before serving: %v", err)
	}

	opt, err := redis.ParseURL(e["REDIS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	bg := context.Background()
	if m, err := fair.RecordedMode(bg, rdb); err != nil || m != fair.ModePlain {
		t.Fatalf("recorded mode at the start = %q, %v; want plain", m, err)
	}
	if err := rdb.FlushAll(bg).Err(); err != nil {
		t.Fatal(err)
	}
	// A bound for the failure message: the service records its mode again
	// within 5 s.
	testenv.WaitFor(t, 20*time.Second, "the plain mode recorded again after the loss", func() bool {
		m, err := fair.RecordedMode(bg, rdb)
		return err == nil && m == fair.ModePlain
	})
	if err := fair.ClaimMode(bg, rdb, fair.ModeFair); !errors.Is(err, fair.ErrModeMismatch) {
		t.Fatalf("a fair process starting after the loss: ClaimMode(fair) = %v, want ErrModeMismatch", err)
	}
}
