package fair_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
)

// TestClaimModeRecordsTheFirstAndRefusesTheOther: the first process to
// start records its dispatch mode; later ones with the same mode start,
// one with the other gets ErrModeMismatch naming both settings; a flushed
// Redis records the next one's again.
func TestClaimModeRecordsTheFirstAndRefusesTheOther(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	if m, err := fair.RecordedMode(ctx, b.rdb); err != nil || m != "" {
		t.Fatalf("RecordedMode of a fresh Redis = %q, %v; want none", m, err)
	}
	for range 2 {
		if err := fair.ClaimMode(ctx, b.rdb, fair.ModeFair); err != nil {
			t.Fatalf("ClaimMode(fair) = %v", err)
		}
	}
	if m, err := fair.RecordedMode(ctx, b.rdb); err != nil || m != fair.ModeFair {
		t.Fatalf("RecordedMode = %q, %v; want fair", m, err)
	}
	err := fair.ClaimMode(ctx, b.rdb, fair.ModePlain)
	if !errors.Is(err, fair.ErrModeMismatch) {
		t.Fatalf("ClaimMode(plain) on a fair Redis = %v, want ErrModeMismatch", err)
	}
	for _, want := range []string{"FAIR_DISPATCH=false", "FAIR_DISPATCH=true"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if m, _ := fair.RecordedMode(ctx, b.rdb); m != fair.ModeFair {
		t.Fatalf("a refused claim changed the recorded mode to %q", m)
	}
	if err := fair.ClaimMode(ctx, b.rdb, "fifo"); err == nil || errors.Is(err, fair.ErrModeMismatch) {
		t.Fatalf("ClaimMode(fifo) = %v, want an invalid-mode error", err)
	}

	b.rdb.FlushDB(ctx)
	if err := fair.ClaimMode(ctx, b.rdb, fair.ModePlain); err != nil {
		t.Fatalf("ClaimMode(plain) on a flushed Redis = %v", err)
	}
	if err := fair.ClaimMode(ctx, b.rdb, fair.ModeFair); !errors.Is(err, fair.ErrModeMismatch) {
		t.Fatalf("ClaimMode(fair) on a plain Redis = %v, want ErrModeMismatch", err)
	}
}

// TestSwitchToPlainWaitsUntilFairDispatchHoldsNothing: switching to plain
// is refused while a task waits in a backlog, is admitted and not
// reported, is parked for a held tenant, or a fair worker's heartbeat is
// current, and the recorded mode stays; once all of it is gone the switch
// is recorded. Switching to fair is accepted whatever is queued.
func TestSwitchToPlainWaitsUntilFairDispatchHoldsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	if err := fair.ClaimMode(ctx, b.rdb, fair.ModeFair); err != nil {
		t.Fatal(err)
	}
	refused := func(why string, want ...string) {
		t.Helper()
		_, err := b.d.SwitchMode(ctx, fair.ModePlain, q)
		if !errors.Is(err, fair.ErrSwitchRefused) {
			t.Fatalf("%s: SwitchMode(plain) = %v, want ErrSwitchRefused", why, err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", why, err, w)
			}
		}
		if m, _ := fair.RecordedMode(ctx, b.rdb); m != fair.ModeFair {
			t.Fatalf("%s: a refused switch recorded %q", why, m)
		}
	}

	// Waiting and admitted (one task pending in asynq, two in the backlog).
	enqueue(t, b, "tn_sw", fair.Policy{Weight: 1}, 0, 3)
	refused("backlog", "2 waiting", "1 admitted")
	// Admitted and not reported, with nothing waiting.
	work(t, b, 2, equalCost)
	if s := stats(t, b, "tn_sw"); s.Waiting != 0 || s.Admitted != 1 {
		t.Fatalf("stats after two of three = %+v, want the last task admitted and nothing waiting", s)
	}
	refused("admitted", "0 waiting", "1 admitted")
	work(t, b, 1, equalCost)
	if _, err := b.d.SwitchMode(ctx, fair.ModePlain); err != nil {
		t.Fatalf("SwitchMode(plain) without queues to check = %v", err)
	}
	if _, err := b.d.SwitchMode(ctx, fair.ModeFair); err != nil {
		t.Fatal(err)
	}

	// A live fair worker, until its heartbeat runs out.
	if err := b.d.Heartbeat(ctx, q, "worker-1", 4, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	refused("live worker", "1 live fair workers")
	b.clock.Advance(11 * time.Second)

	// A task parked while its tenant is held.
	enqueue(t, b, "tn_park", fair.Policy{Weight: 1}, 0, 1)
	id := dequeue(t, b)
	holdAndPark(t, b, "tn_park", id, fair.Suspended)
	toRetry(t, b, id)
	if s := stats(t, b, "tn_park"); s.Parked != 1 || s.Waiting != 0 || s.Admitted != 0 {
		t.Fatalf("stats while held = %+v, want only the parked task", s)
	}
	refused("parked", "0 waiting", "0 admitted", "1 tenants with parked tasks")

	// To fair is always accepted.
	if from, err := b.d.SwitchMode(ctx, fair.ModeFair, q); err != nil || from != fair.ModeFair {
		t.Fatalf("SwitchMode(fair) with a parked task = %q, %v", from, err)
	}

	if d, err := b.d.Drain(ctx, "tn_park", q); err != nil || d.Parked != 1 {
		t.Fatalf("Drain = %+v, %v", d, err)
	}
	from, err := b.d.SwitchMode(ctx, fair.ModePlain, q)
	if err != nil || from != fair.ModeFair {
		t.Fatalf("SwitchMode(plain) with nothing left = %q, %v", from, err)
	}
	if m, _ := fair.RecordedMode(ctx, b.rdb); m != fair.ModePlain {
		t.Fatalf("recorded mode after the switch = %q", m)
	}
	if err := fair.ClaimMode(ctx, b.rdb, fair.ModeFair); !errors.Is(err, fair.ErrModeMismatch) {
		t.Fatalf("a fair process after the switch: ClaimMode = %v, want ErrModeMismatch", err)
	}
}
