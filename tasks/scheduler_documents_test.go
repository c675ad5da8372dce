package tasks

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestSchedulerOfDocumentsSweep: with Task and Var, the scheduler
// enqueues sweep:documents per tick (one task per tick, its id the tick)
// and its errors name DOCUMENTS_SWEEP_CRON.
func TestSchedulerOfDocumentsSweep(t *testing.T) {
	t.Parallel()
	for _, spec := range []string{"bad spec", "0 0 30 2 *"} {
		err := RunScheduler(context.Background(), nil, spec, SchedulerOptions{Var: DocumentsCronVar})
		if err == nil || !strings.HasPrefix(err.Error(), "DOCUMENTS_SWEEP_CRON: ") {
			t.Errorf("RunScheduler with %q = %v, want an error naming DOCUMENTS_SWEEP_CRON", spec, err)
		}
		if _, err := ParseScheduleOf(DocumentsCronVar, spec); err == nil || !strings.HasPrefix(err.Error(), "DOCUMENTS_SWEEP_CRON: ") {
			t.Errorf("ParseScheduleOf(%q) = %v, want an error naming DOCUMENTS_SWEEP_CRON", spec, err)
		}
	}

	ctx, cancel := context.WithCancel(testContext(t))
	enq, _ := newTestEnqueuer(t, newRedis(t))
	clock := &fakeClock{now: time.Date(2026, 3, 1, 3, 29, 0, 0, time.UTC)}
	log := &tickLog{calls: map[int64][]EnqueueResult{}}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := RunScheduler(ctx, enq, "30 3 * * *", SchedulerOptions{Clock: clock, Logger: discardLogger(), OnTick: log.onTick,
			Var: DocumentsCronVar, Task: func(tick int64) Payload { return SweepDocuments{Tick: tick} }}); err != nil {
			t.Error(err)
		}
	})
	tick := time.Date(2026, 3, 1, 3, 30, 0, 0, time.UTC)
	testenv.WaitFor(t, 30*time.Second, "the loop to wait for its tick", func() bool { return clock.waiting() == 1 })
	clock.set(tick.Add(time.Second))
	testenv.WaitFor(t, 30*time.Second, "the tick to fire", func() bool { return log.count(tick.Unix()) == 1 })
	cancel()
	wg.Wait()
	log.mu.Lock()
	defer log.mu.Unlock()
	res := log.calls[tick.Unix()][0]
	if want := "sweep:documents:" + strconv.FormatInt(tick.Unix(), 10); res.Info.ID != want || res.Info.Type != TypeSweepDocuments || res.Info.Queue != QueueLow {
		t.Errorf("tick enqueued %s (%s on %s), want %s (sweep:documents on low)", res.Info.ID, res.Info.Type, res.Info.Queue, want)
	}
}
