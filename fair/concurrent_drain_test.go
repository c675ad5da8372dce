package fair_test

import (
	"context"
	"sync"
	"testing"

	"github.com/invoicing/tenantworker/fair"
)

// TestConcurrentDrainsCountEachTaskOnce: drains of one tenant running at
// once share the work (5,000 tasks per step): together they discard every
// task once, and their counts add up to the backlog.
func TestConcurrentDrainsCountEachTaskOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const tn = "tn_cdrain"
	const n = 23_000
	for from := 0; from < n; from += 1000 {
		enqueue(t, b, tn, fair.Policy{Weight: 1}, from, 1000)
	}
	var wg sync.WaitGroup
	res := make([]fair.Drained, 3)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := b.d.Drain(ctx, tn, q)
			if err != nil {
				t.Error(err)
			}
			res[i] = r
		}()
	}
	wg.Wait()
	total := 0
	for _, r := range res {
		total += r.Total()
	}
	if total != n {
		t.Fatalf("drains discarded %v = %d, want %d", res, total, n)
	}
	if s := stats(t, b, tn); s.Waiting != 0 || len(s.WaitingByType) != 0 {
		t.Fatalf("after: %+v", s)
	}
	top, tot, _ := b.d.Top(ctx, q, 5)
	if tot != 0 || len(top) != 0 {
		t.Fatalf("top %v total %d", top, tot)
	}
}
