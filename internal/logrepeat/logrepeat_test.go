package logrepeat_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/logrepeat"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// allow calls l.Allow(key) and fails t unless it answers want.
func allow(t *testing.T, l *logrepeat.Limiter, key string, wantSuppressed int, wantWrite bool) {
	t.Helper()
	if n, ok := l.Allow(key); n != wantSuppressed || ok != wantWrite {
		t.Fatalf("Allow(%q) = %d, %v; want %d, %v", key, n, ok, wantSuppressed, wantWrite)
	}
}

// TestLimiterWritesOncePerInterval: a key's first line is written, the
// ones within the interval after the last one written are left out, and
// the first one at the end of the interval (exactly there too) is written
// with how many were left out; the count starts again after it.
func TestLimiterWritesOncePerInterval(t *testing.T) {
	clock := testenv.NewManualClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	l := logrepeat.New(time.Minute, clock.Now)
	allow(t, l, "Dequeue error", 0, true)
	for range 3 {
		clock.Advance(10 * time.Second)
		allow(t, l, "Dequeue error", 0, false)
	}
	clock.Advance(30 * time.Second) // 60 s after the line written
	allow(t, l, "Dequeue error", 3, true)
	clock.Advance(59 * time.Second)
	allow(t, l, "Dequeue error", 0, false)
	clock.Advance(time.Second)
	allow(t, l, "Dequeue error", 1, true)
	// A line after a quiet spell is written at once, with nothing left
	// out.
	clock.Advance(time.Hour)
	allow(t, l, "Dequeue error", 0, true)
}

// TestLimiterKeysAreIndependent: lines of one key neither hold back nor
// count for another's.
func TestLimiterKeysAreIndependent(t *testing.T) {
	clock := testenv.NewManualClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	l := logrepeat.New(time.Minute, clock.Now)
	allow(t, l, "a", 0, true)
	allow(t, l, "a", 0, false)
	allow(t, l, "b", 0, true)
	allow(t, l, "a", 0, false)
	clock.Advance(time.Minute)
	allow(t, l, "b", 0, true)
	allow(t, l, "a", 2, true)
}

// TestLimiterForgetsPastMaxKeys: the keys remembered are bounded; past
// MaxKeys the limiter forgets them all, so a key held back comes through
// once more, and the limiter goes on spacing lines after.
func TestLimiterForgetsPastMaxKeys(t *testing.T) {
	clock := testenv.NewManualClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	l := logrepeat.New(time.Minute, clock.Now)
	for i := range logrepeat.MaxKeys {
		allow(t, l, fmt.Sprint("key ", i), 0, true)
	}
	allow(t, l, "key 0", 0, false)
	allow(t, l, "one too many", 0, true)
	allow(t, l, "key 0", 0, true)
	allow(t, l, "key 0", 0, false)
	allow(t, l, "one too many", 0, false)
}

// TestLimiterConcurrentUse: lines of one key from many goroutines at one
// instant are written once, and all the others are counted in the next
// line written (run with -race).
func TestLimiterConcurrentUse(t *testing.T) {
	clock := testenv.NewManualClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	l := logrepeat.New(time.Minute, clock.Now)
	var wg sync.WaitGroup
	var mu sync.Mutex
	written := 0
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if _, ok := l.Allow("Failed to forward scheduled tasks"); ok {
					mu.Lock()
					written++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if written != 1 {
		t.Fatalf("%d of 800 lines at one instant written, want 1", written)
	}
	clock.Advance(time.Minute)
	allow(t, l, "Failed to forward scheduled tasks", 799, true)
}
