package httpapi

import (
	"context"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultAuthFailuresPerMinute is how many failed authentications one
// client address may make per minute (and in a burst) before it gets 429.
const DefaultAuthFailuresPerMinute = 20

// maxLimiterEntries bounds the addresses a failureLimiter remembers.
const maxLimiterEntries = 100_000

// failureLimiter rate-limits failed authentication per client address
// with a token bucket: each failure takes a token, perMinute tokens refill
// per minute up to perMinute. An address without a token is refused (429
// with Retry-After) before its request costs a catalog look-up, so random
// keys or random subdomains cannot hammer the catalog (P14 in
// docs/architecture.md), nor guess the admin token. Successful requests
// take nothing.
//
// An authentication in progress holds one of its address's tokens
// (admit): an address has at most as many in progress as it has tokens,
// and the others wait for them. Otherwise every request of a concurrent
// burst would pass the check before the first of them failed. Waiting
// costs a client that authenticates correctly a few microseconds at most
// (its look-ups are cached); a burst of bad keys is refused once the
// tokens are spent. It is safe for concurrent use.
type failureLimiter struct {
	rate     float64 // tokens per second
	capacity float64
	now      func() time.Time

	mu       sync.Mutex
	buckets  map[string]limiterBucket
	inflight map[string]int           // authentications in progress per address
	changed  map[string]chan struct{} // closed when one of them ends
}

// limiterBucket is one address's tokens at a time.
type limiterBucket struct {
	tokens float64
	at     time.Time
}

// newFailureLimiter returns a limiter allowing perMinute failures per
// minute per address; nil (no limit) when perMinute is negative.
func newFailureLimiter(perMinute int, now func() time.Time) *failureLimiter {
	if perMinute < 0 {
		return nil
	}
	if perMinute == 0 {
		perMinute = DefaultAuthFailuresPerMinute
	}
	return &failureLimiter{
		rate: float64(perMinute) / 60, capacity: float64(perMinute), now: now,
		buckets: make(map[string]limiterBucket), inflight: make(map[string]int), changed: make(map[string]chan struct{}),
	}
}

// admit starts an authentication of addr: it returns a release func to
// call when the outcome is known (after fail, for a failure), once fewer
// of addr's authentications are in progress than it has tokens. It
// returns a positive wait instead when addr has no token left, and ctx's
// error when ctx ends first.
func (l *failureLimiter) admit(ctx context.Context, addr string) (release func(), wait time.Duration, err error) {
	if l == nil {
		return func() {}, 0, nil
	}
	for {
		now := l.now()
		l.mu.Lock()
		tokens := l.tokensLocked(addr, now)
		if tokens < 1 {
			l.mu.Unlock()
			return nil, time.Duration((1 - tokens) / l.rate * float64(time.Second)), nil
		}
		if float64(l.inflight[addr]) < math.Floor(tokens) {
			l.inflight[addr]++
			l.mu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { l.done(addr) }) }, 0, nil
		}
		ch, ok := l.changed[addr]
		if !ok {
			ch = make(chan struct{})
			l.changed[addr] = ch
		}
		l.mu.Unlock()
		// Wait for one in progress to end; tokens also refill with time.
		next := time.Duration((math.Floor(tokens) + 1 - tokens) / l.rate * float64(time.Second))
		t := time.NewTimer(next)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, 0, ctx.Err()
		}
		t.Stop()
	}
}

// done ends one of addr's authentications in progress and wakes those
// waiting for it.
func (l *failureLimiter) done(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inflight[addr]--; l.inflight[addr] <= 0 {
		delete(l.inflight, addr)
	}
	if ch, ok := l.changed[addr]; ok {
		close(ch)
		delete(l.changed, addr)
	}
}

// tokensLocked returns addr's tokens now.
func (l *failureLimiter) tokensLocked(addr string, now time.Time) float64 {
	b, ok := l.buckets[addr]
	if !ok {
		return l.capacity
	}
	return min(l.capacity, b.tokens+now.Sub(b.at).Seconds()*l.rate)
}

// retryAfter returns how long addr must wait before its next attempt, or
// 0 when it may try now.
func (l *failureLimiter) retryAfter(addr string) time.Duration {
	if l == nil {
		return 0
	}
	now := l.now()
	l.mu.Lock()
	tokens := l.tokensLocked(addr, now)
	l.mu.Unlock()
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / l.rate * float64(time.Second))
}

// fail takes a token from addr.
func (l *failureLimiter) fail(addr string) {
	if l == nil {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	tokens := l.tokensLocked(addr, now)
	if _, ok := l.buckets[addr]; !ok && len(l.buckets) >= maxLimiterEntries {
		l.evictLocked(now)
	}
	l.buckets[addr] = limiterBucket{tokens: max(tokens-1, 0), at: now}
}

// evictLocked forgets addresses whose bucket has refilled (they are as if
// never seen) and, if that is not enough, others down to 90%: first those
// with an attempt left, and only then those out of attempts. Forgotten
// first, those would let a client with many addresses give its exhausted
// ones their attempts again by failing once from others.
func (l *failureLimiter) evictLocked(now time.Time) {
	const keep = maxLimiterEntries - maxLimiterEntries/10
	for addr := range l.buckets {
		if l.tokensLocked(addr, now) >= l.capacity {
			delete(l.buckets, addr)
		}
	}
	for _, exhaustedToo := range []bool{false, true} {
		for addr := range l.buckets {
			if len(l.buckets) < keep {
				return
			}
			if exhaustedToo || l.tokensLocked(addr, now) >= 1 {
				delete(l.buckets, addr)
			}
		}
	}
}

// refuseIfLimited answers 429 with Retry-After (whole seconds, at least 1)
// and returns true when addr has used up its failed attempts.
func refuseIfLimited(w http.ResponseWriter, l *failureLimiter, addr string) bool {
	wait := l.retryAfter(addr)
	if wait <= 0 {
		return false
	}
	refuseTooMany(w, wait)
	return true
}

// refuseTooMany answers 429 with Retry-After: wait in whole seconds, at
// least 1.
func refuseTooMany(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
	writeError(w, http.StatusTooManyRequests, "too many failed authentication attempts, retry later")
}

// startAuth admits an authentication of addr (failureLimiter.admit): it
// answers 429 when addr has no attempt left, 503 when the request's time
// ran out while waiting (499 when its client gave up), and returns false
// then.
func startAuth(w http.ResponseWriter, r *http.Request, l *failureLimiter, addr string) (release func(), ok bool) {
	release, wait, err := l.admit(r.Context(), addr)
	switch {
	case err != nil && clientGone(w, r, err):
		return nil, false
	case err != nil:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "service temporarily unavailable, retry later")
		return nil, false
	case wait > 0:
		refuseTooMany(w, wait)
		return nil, false
	}
	return release, true
}

// parseClientIP reads an address a proxy wrote into the client address
// header: an IP, an IPv6 address in brackets ("[2001:db8::1]", as
// RFC 7239 writes it), or an IP with a port ("198.51.100.7:50123",
// "[2001:db8::1]:443"), as some load balancers write it. The invalid
// Addr when it is none of these.
func parseClientIP(s string) netip.Addr {
	if inner, ok := strings.CutPrefix(s, "["); ok && strings.HasSuffix(inner, "]") {
		s = strings.TrimSuffix(inner, "]")
		if ip, err := netip.ParseAddr(s); err == nil && ip.Is6() {
			return ip
		}
		return netip.Addr{}
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr()
	}
	return netip.Addr{}
}

// clientAddr returns the address failed authentications are counted by:
// the peer's IP, or, when Options.ClientIPHeader names a header set by a
// trusted proxy, the last address in it (with or without a port). IPv6
// addresses count per /64, the block one client usually holds.
func (h *Handler) clientAddr(r *http.Request) string {
	var ip netip.Addr
	if hdr := h.opts.ClientIPHeader; hdr != "" {
		if v := r.Header.Values(hdr); len(v) > 0 {
			last := v[len(v)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			ip = parseClientIP(strings.TrimSpace(last))
		}
	}
	if !ip.IsValid() {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		ip, _ = netip.ParseAddr(host)
	}
	if !ip.IsValid() {
		return "unknown"
	}
	ip = ip.Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.String()
		}
	}
	return ip.String()
}
