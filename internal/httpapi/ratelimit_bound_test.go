package httpapi

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// TestFailureLimiterStaysBoundedUnderManyAddresses pushes far more
// distinct client addresses with bad keys through the failed
// authentication limiter than it remembers: its buckets stay within
// maxLimiterEntries, and nothing is left behind in its in-progress maps
// once the authentications ended.
func TestFailureLimiterStaysBoundedUnderManyAddresses(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	l := newFailureLimiter(DefaultAuthFailuresPerMinute, func() time.Time { return now })
	ctx := context.Background()
	base := netip.MustParseAddr("10.0.0.0")
	const n = 250_000
	for i := range n {
		if i%1000 == 0 {
			now = now.Add(time.Millisecond) // a burst: no bucket refills
		}
		a4 := base.As4()
		a4[1], a4[2], a4[3] = byte(i>>16), byte(i>>8), byte(i)
		addr := netip.AddrFrom4(a4)
		release, wait, err := l.admit(ctx, addr.String())
		if err != nil || wait > 0 {
			t.Fatalf("address #%d refused on its first attempt: wait %v, error %v", i, wait, err)
		}
		l.fail(addr.String())
		release()
		if got := len(l.buckets); got > maxLimiterEntries {
			t.Fatalf("after %d addresses the limiter remembers %d, bound %d", i+1, got, maxLimiterEntries)
		}
	}
	if len(l.inflight) != 0 || len(l.changed) != 0 {
		t.Errorf("in progress maps hold %d and %d addresses after every authentication ended, want 0", len(l.inflight), len(l.changed))
	}
	// An address that keeps failing is still limited after the flood.
	hostile := "192.0.2.1"
	for range DefaultAuthFailuresPerMinute {
		l.fail(hostile)
	}
	if l.retryAfter(hostile) <= 0 {
		t.Errorf("address out of attempts not limited after %d other addresses", n)
	}
}
