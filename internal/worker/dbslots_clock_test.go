package worker

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/tenantctx"
)

// TestDatabaseSlotsJudgeStuckOnTheMonotonicClock: whether a database is
// stuck (none of its slots taken or given back for the wait) is judged on
// the monotonic clock (faked here; the real one is what time.Since reads),
// which a step of the wall clock does not move. It was judged on the wall
// clock (UnixNano): NTP stepping it forward by a minute made a database
// whose slot was taken a moment before look stuck for a wait of 5 s, and
// its next task was turned away at once with ErrDatabaseBusy instead of
// waiting for the slot.
func TestDatabaseSlotsJudgeStuckOnTheMonotonicClock(t *testing.T) {
	t.Parallel()
	const wait = time.Hour
	var elapsed atomic.Int64 // the monotonic clock, in ns
	elapsed.Store(int64(24 * time.Hour))
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	h := databaseSlotsOn(1, wait, func() time.Duration { return time.Duration(elapsed.Load()) })(
		asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
			started <- struct{}{}
			<-release
			return nil
		}))
	// Bounds only a run the test got wrong: a task waiting for a slot
	// takes it when the held one is given back.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = tenantctx.WithTenant(ctx, tenantctx.Tenant{ID: "tn_x", Database: "second"})
	run := func() chan error {
		done := make(chan error, 1)
		go func() { done <- h.ProcessTask(ctx, asynq.NewTask("invoice:pdf", nil)) }()
		return done
	}

	held := run()
	<-started
	elapsed.Add(int64(wait - time.Millisecond)) // not stuck yet
	waiting := run()
	release <- struct{}{}
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	select {
	case <-started: // the waiting task took the slot given back
	case err := <-waiting:
		t.Fatalf("a task over the bound just short of the wait since the slot was taken: %v, want it waiting for the slot", err)
	}

	elapsed.Add(int64(wait)) // none taken or given back for the wait
	if err := <-run(); !errors.Is(err, ErrDatabaseBusy) {
		t.Fatalf("a task over the bound a wait after the slot was last taken: %v, want ErrDatabaseBusy at once", err)
	}
	close(release)
	if err := <-waiting; err != nil {
		t.Fatal(err)
	}
}
