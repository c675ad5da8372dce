package fair_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
)

// TestModeLostWithRedisDataIsRecordedAgain: the fair processes running
// when Redis loses its data (a restart without persistence, a FLUSHALL)
// record their dispatch mode again when they find the loss, with the holds
// they put back, so a process with FAIR_DISPATCH=false started afterwards
// is refused as it was before the loss; it used to record plain, start
// beside them, and make every fair process that restarted later refuse to
// start. A plain process that recorded its mode first is reported, not
// overwritten.
func TestModeLostWithRedisDataIsRecordedAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, found := range []string{"heartbeat", "enqueue"} {
		t.Run("found by "+found, func(t *testing.T) {
			t.Parallel()
			b := setupHolds(t, 1)
			if err := fair.ClaimMode(ctx, b.rdb, fair.ModeFair); err != nil {
				t.Fatal(err)
			}
			b.beat(t)
			b.flush(t)
			if found == "heartbeat" {
				b.beat(t)
			} else {
				enqueue(t, b.bundle, "tn_a", fair.Policy{Weight: 1}, 0, 1)
			}
			if m, err := fair.RecordedMode(ctx, b.rdb); err != nil || m != fair.ModeFair {
				t.Fatalf("recorded mode after the %s that found the loss = %q, %v; want fair", found, m, err)
			}
			if err := fair.ClaimMode(ctx, b.rdb, fair.ModePlain); !errors.Is(err, fair.ErrModeMismatch) {
				t.Fatalf("a plain process starting after the loss: ClaimMode(plain) = %v, want ErrModeMismatch", err)
			}
		})
	}
	t.Run("plain recorded first", func(t *testing.T) {
		t.Parallel()
		b := setupHolds(t, 1)
		if err := fair.ClaimMode(ctx, b.rdb, fair.ModeFair); err != nil {
			t.Fatal(err)
		}
		b.beat(t)
		b.flush(t)
		if err := fair.ClaimMode(ctx, b.rdb, fair.ModePlain); err != nil {
			t.Fatal(err)
		}
		err := b.d.Heartbeat(ctx, q, "w1", 4, time.Minute)
		if !errors.Is(err, fair.ErrModeMismatch) {
			t.Fatalf("heartbeat of a fair worker after a plain process recorded its mode = %v, want ErrModeMismatch", err)
		}
		if m, _ := fair.RecordedMode(ctx, b.rdb); m != fair.ModePlain {
			t.Fatalf("recorded mode = %q, want plain left as recorded", m)
		}
		// The holds were put back all the same: the next beat finds
		// nothing lost.
		if err := b.d.Heartbeat(ctx, q, "w1", 4, time.Minute); err != nil {
			t.Fatalf("second heartbeat: %v", err)
		}
	})
}
