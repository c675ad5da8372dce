package httpapi_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
)

// TestFailedAuthIsRateLimited: 500 requests with random keys, then 500 with
// random subdomains, from one client address cost the catalog about as
// many queries as the address may fail per minute, not 500 each: past its
// limit the address gets 429 with Retry-After before any look-up. Other
// addresses are not affected; a /64 of IPv6 counts as one address; failed
// admin tokens and dashboard passwords are limited the same way, sharing
// one budget per address (P14 in docs/architecture.md). The limiter's
// clock is the test's: it moves only when the test moves it, so a slow
// machine cannot refill a token in the middle.
func TestFailedAuthIsRateLimited(t *testing.T) {
	t.Parallel()
	const perMinute = 10
	clock := testenv.NewManualClock(time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC))
	b := setup(t, func(o *httpapi.Options) {
		o.AuthFailuresPerMinute = perMinute
		o.ClientIPHeader = "X-Real-IP"
		o.Now = clock.Now
	})
	acme := b.active(t, "acme")
	from := func(ip string) http.Header { return http.Header{"X-Real-Ip": {ip}} }
	call := func(ip, host, key string) response {
		return b.do(t, request{method: http.MethodPost, host: host, path: "/v1/invoices/1/pdf", bearer: key, header: from(ip)})
	}
	randomKey := func() string { k, _ := storage.NewAPIKey(); return k }

	for i, attack := range []struct {
		name, ip string
		host     func(int) string
		key      func() string
		first    int
	}{
		{"random keys", "198.51.100.7", func(int) string { return acme.host() }, randomKey, http.StatusUnauthorized},
		// A random key is refused before the subdomain is looked up: the
		// caller learns nothing about which subdomains exist.
		{"random subdomains", "203.0.113.9", func(i int) string { return fmt.Sprintf("guess-%d%s", i, suffix) }, randomKey, http.StatusUnauthorized},
	} {
		before := b.pg.Queries()
		counts := map[int]int{}
		for j := range 500 {
			r := call(attack.ip, attack.host(i*1000+j), attack.key())
			counts[r.status]++
			if r.status == http.StatusTooManyRequests {
				// No token left, one refills every 60/perMinute seconds.
				if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s != 60/perMinute {
					t.Fatalf("%s: 429 with Retry-After %q, want %d", attack.name, r.header.Get("Retry-After"), 60/perMinute)
				}
			}
		}
		queries := b.pg.Queries() - before
		t.Logf("%s: 500 requests from one address: %v, %d catalog queries", attack.name, counts, queries)
		if counts[attack.first] != perMinute || counts[http.StatusTooManyRequests] != 500-perMinute {
			t.Errorf("%s: statuses %v, want %d times %d then 429", attack.name, counts, perMinute, attack.first)
		}
		if queries > perMinute+2 {
			t.Errorf("%s: 500 requests cost %d catalog queries, want at most %d", attack.name, queries, perMinute+2)
		}
	}

	// The limited address is refused even with a good key; others are not.
	if r := call("198.51.100.7", acme.host(), acme.key); r.status != http.StatusTooManyRequests {
		t.Errorf("limited address with a good key: %d, want 429", r.status)
	}
	if r := call("198.51.100.8", acme.host(), acme.key); r.status != http.StatusAccepted {
		t.Errorf("another address with a good key: %d, want 202", r.status)
	}
	// Tokens refill with time: one every 60/perMinute seconds.
	clock.Advance(60 * time.Second / perMinute / 2)
	if r := call("198.51.100.7", acme.host(), acme.key); r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "3" {
		t.Errorf("half a refill later with a good key: %d (Retry-After %q), want 429 (Retry-After 3)", r.status, r.header.Get("Retry-After"))
	}
	clock.Advance(60 * time.Second / perMinute / 2)
	if r := call("198.51.100.7", acme.host(), acme.key); r.status != http.StatusAccepted {
		t.Errorf("a refill later with a good key: %d, want 202", r.status)
	}
	if r := call("198.51.100.7", acme.host(), randomKey()); r.status != http.StatusUnauthorized {
		t.Errorf("a refill later with a bad key: %d, want 401 (a success takes no token)", r.status)
	}
	if r := call("198.51.100.7", acme.host(), acme.key); r.status != http.StatusTooManyRequests {
		t.Errorf("after the refilled token was spent: %d, want 429", r.status)
	}
	// IPv6: one /64 is one client.
	for i := range perMinute {
		call(fmt.Sprintf("2001:db8:1:2::%x", i+1), acme.host(), randomKey())
	}
	if r := call("2001:db8:1:2::ffff", acme.host(), acme.key); r.status != http.StatusTooManyRequests {
		t.Errorf("the same /64 after %d failures: %d, want 429", perMinute, r.status)
	}
	if r := call("2001:db8:1:3::1", acme.host(), acme.key); r.status != http.StatusAccepted {
		t.Errorf("another /64: %d, want 202", r.status)
	}
	// No key at all costs nothing and counts nothing.
	for range 2 * perMinute {
		call("192.0.2.50", acme.host(), "")
	}
	if r := call("192.0.2.50", acme.host(), acme.key); r.status != http.StatusAccepted {
		t.Errorf("after requests without a key: %d, want 202", r.status)
	}

	// Admin tokens: the same limit, the right token refused while limited.
	admin := func(ip, token string) int {
		return b.do(t, request{method: http.MethodGet, path: "/admin/tenants", bearer: token, header: from(ip)}).status
	}
	for range perMinute {
		if got := admin("192.0.2.66", "guess"); got != http.StatusUnauthorized {
			t.Fatalf("wrong admin token: %d, want 401", got)
		}
	}
	if got := admin("192.0.2.66", "guess"); got != http.StatusTooManyRequests {
		t.Errorf("admin token guess %d: %d, want 429", perMinute+1, got)
	}
	if got := admin("192.0.2.66", adminToken); got != http.StatusTooManyRequests {
		t.Errorf("limited address with the admin token: %d, want 429", got)
	}
	if got := admin("192.0.2.67", adminToken); got != http.StatusOK {
		t.Errorf("another address with the admin token: %d, want 200", got)
	}

	// Dashboard logins (HTTP Basic, the admin token as password): the same
	// limit, shared with the admin API's bearer tokens of that address.
	dashboard := func(ip, password string) response {
		return b.do(t, request{method: http.MethodGet, path: "/admin/dashboard/", header: from(ip),
			auth: "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+password))})
	}
	for i := range perMinute {
		if r := dashboard("192.0.2.77", fmt.Sprintf("guess-%d", i)); r.status != http.StatusUnauthorized {
			t.Fatalf("wrong dashboard password: %d, want 401", r.status)
		}
	}
	r := dashboard("192.0.2.77", "guess")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Errorf("dashboard password guess %d: %d (Retry-After %q), want 429 with Retry-After", perMinute+1, r.status, r.header.Get("Retry-After"))
	}
	if r := dashboard("192.0.2.77", adminToken); r.status != http.StatusTooManyRequests {
		t.Errorf("limited address with the right dashboard password: %d, want 429", r.status)
	}
	if got := admin("192.0.2.77", adminToken); got != http.StatusTooManyRequests {
		t.Errorf("admin API from an address limited on the dashboard: %d, want 429", got)
	}
	if r := dashboard("192.0.2.78", adminToken); r.status != http.StatusOK {
		t.Errorf("another address with the right dashboard password: %d, want 200", r.status)
	}
}

// TestFailedAuthLimitHoldsUnderConcurrency: 300 requests with random keys
// sent at once from one address fail authentication about as many times
// as the address may per minute (its catalog look-ups likewise), not once
// each: an authentication in progress holds one of the address's
// attempts, so a burst cannot pass the check before the first failures
// are counted. A client with a valid key sending as many at once from one
// address is served in full.
func TestFailedAuthLimitHoldsUnderConcurrency(t *testing.T) {
	t.Parallel()
	const perMinute, burst = 5, 300
	// The clock stands still: no token refills while the burst runs.
	clock := testenv.NewManualClock(time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC))
	b := setup(t, func(o *httpapi.Options) {
		o.AuthFailuresPerMinute = perMinute
		o.ClientIPHeader = "X-Real-IP"
		o.Now = clock.Now
		// 300 requests at once share 16 connections: on a slow machine
		// some would exceed the default 10 s and answer 503, which is
		// not what this test is about.
		o.RequestTimeout = 2 * time.Minute
	})
	acme := b.active(t, "acme")
	send := func(ip, key string) map[int]int {
		var mu sync.Mutex
		counts := map[int]int{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range burst {
			k := key
			if k == "" {
				k, _ = storage.NewAPIKey()
			}
			wg.Go(func() {
				<-start
				r := b.do(t, request{method: http.MethodGet, host: acme.host(), path: "/v1/tasks/none", bearer: k,
					header: http.Header{"X-Real-Ip": {ip}}})
				mu.Lock()
				counts[r.status]++
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		return counts
	}
	before := b.pg.Queries()
	counts := send("198.51.100.8", "")
	queries := b.pg.Queries() - before
	t.Logf("%d random keys at once: %v, %d catalog queries", burst, counts, queries)
	if counts[http.StatusUnauthorized] != perMinute || counts[http.StatusTooManyRequests] != burst-perMinute {
		t.Errorf("statuses %v, want %d times 401, the rest 429", counts, perMinute)
	}
	if queries > perMinute+3 {
		t.Errorf("%d catalog queries for the burst, want about %d", queries, perMinute)
	}
	if counts := send("198.51.100.9", acme.key); counts[http.StatusNotFound] != burst {
		t.Errorf("a valid key %d times at once: %v, want every one answered (404: no such task)", burst, counts)
	}
}
