package fair_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
)

// TestEveryAdmissionIsObserved: tenantworker_fair_admission_wait_seconds
// (Config.OnAdmit) sees every task admitted from a backlog, also those a
// release (an operator's resume, a tenant's resume) or a drain admits:
// the release after a long pause admits the tasks that waited longest.
func TestEveryAdmissionIsObserved(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var waits []time.Duration
	b := setupConfig(t, fair.Config{MinPending: 2, PendingPerSlot: 1, PendingTime: time.Microsecond,
		OnAdmit: func(_ string, w []time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			waits = append(waits, w...)
		}})
	observed := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(waits)
	}
	ctx := context.Background()
	pol := fair.Policy{Weight: 1}
	if _, err := b.d.Hold(ctx, "tn_paused", fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	enqueue(t, b, "tn_paused", pol, 1, 2)
	b.clock.Advance(time.Hour)
	if _, err := b.d.Release(ctx, "tn_paused", fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, "tn_paused"); s.Admitted != 2 || observed() != 2 {
		t.Fatalf("release admitted %d tasks, the admission wait metric observed %d", s.Admitted, observed())
	}

	// A drain of tn_paused makes room in asynq's pending list: tn_other's
	// waiting tasks are admitted by it.
	enqueue(t, b, "tn_other", pol, 1, 2) // wait behind the two pending
	before := observed()
	if n, err := b.d.Drain(ctx, "tn_paused", q); err != nil || n.Admitted != 2 {
		t.Fatalf("drain: %+v, %v", n, err)
	}
	if s := stats(t, b, "tn_other"); s.Admitted != 2 || observed()-before != 2 {
		t.Fatalf("drain let %d of tn_other's tasks in, the admission wait metric observed %d", s.Admitted, observed()-before)
	}
}
