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

// TestFailureLimiterKeepsExhaustedAddressesThroughEviction: once it
// remembers maxLimiterEntries addresses, the limiter forgets some to take
// new ones. It forgot arbitrary ones, those out of attempts too: a client
// with enough addresses could have its exhausted ones forgotten, each
// given its attempts again, by failing once from many others. It forgets
// those with attempts left first.
func TestFailureLimiterKeepsExhaustedAddressesThroughEviction(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	l := newFailureLimiter(DefaultAuthFailuresPerMinute, func() time.Time { return now })
	addr := func(net byte, i int) string {
		return netip.AddrFrom4([4]byte{10, net, byte(i >> 8), byte(i)}).String()
	}
	const exhausted = 1000
	for i := range exhausted {
		for range DefaultAuthFailuresPerMinute {
			l.fail(addr(1, i))
		}
	}
	// Addresses that fail once each, through several evictions.
	for i := range maxLimiterEntries * 2 {
		l.fail(netip.AddrFrom4([4]byte{172, byte(i >> 16), byte(i >> 8), byte(i)}).String())
	}
	forgotten := 0
	for i := range exhausted {
		if l.retryAfter(addr(1, i)) <= 0 {
			forgotten++
		}
	}
	if forgotten > 0 {
		t.Errorf("%d of %d addresses out of attempts were given their attempts again by the failures of %d others", forgotten, exhausted, maxLimiterEntries*2)
	}
}
