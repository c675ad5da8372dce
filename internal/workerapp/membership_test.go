package workerapp

import (
	"slices"
	"testing"

	"github.com/invoicing/tenantworker/tasks"
)

// TestMembership: a worker registers in every served queue, its slots
// divided by the shards of a class (rounded up), so the depth the
// dispatcher keeps pending, summed over a class, stays about one worker's
// concurrency; one shard registers every slot in the three queues.
func TestMembership(t *testing.T) {
	t.Parallel()
	m := membership("w1", tasks.Layout{}, tasks.Layout{}.Queues(), 10)
	if m.ID != "w1" || m.Concurrency != 10 || !slices.Equal(m.Queues, tasks.Queues) {
		t.Errorf("one shard: %+v", m)
	}
	for _, tt := range []struct{ shards, served, concurrency, want int }{
		{3, 3, 10, 4}, {3, 3, 9, 3}, {2, 2, 10, 5}, {16, 16, 10, 1}, {1, 3, 10, 4}, {3, 3, 1, 1},
	} {
		l, err := tasks.NewLayout(tt.shards, tt.served)
		if err != nil {
			t.Fatal(err)
		}
		m := membership("w", l, l.Queues(), tt.concurrency)
		if m.Concurrency != tt.want || !slices.Equal(m.Queues, l.Queues()) {
			t.Errorf("%d shards (serving %d), concurrency %d: %d slots in %v, want %d in every served queue",
				tt.shards, tt.served, tt.concurrency, m.Concurrency, m.Queues, tt.want)
		}
	}
}
