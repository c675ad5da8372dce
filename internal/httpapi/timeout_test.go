package httpapi_test

import (
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/httpapi"
)

// TestLockedTenantDoesNotStallOthers: while something holds an exclusive
// lock on one tenant's invoices (a migration, the invoicing app), more of
// its requests than the pool has connections each answer 503 with
// Retry-After once RequestTimeout has passed, instead of holding a
// connection until the lock goes; another tenant is served meanwhile.
func TestLockedTenantDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	// RequestTimeout bounds the served requests too (the warm-ups below
	// and the other tenant's): short enough for the locked ones to give
	// up soon, long enough for a served request on a loaded machine.
	b := setup(t, func(o *httpapi.Options) { o.RequestTimeout = 5 * time.Second })
	locked, other := b.active(t, "locked"), b.active(t, "unlocked")
	post := func(tn tenant, id int) response {
		return b.do(t, request{method: http.MethodPost, path: "/v1/invoices/" + strconv.Itoa(id) + "/pdf", host: tn.host(), bearer: tn.key})
	}
	// Both tenants' look-ups cached and statements prepared, as in a
	// running service: a cold first request takes a few hundred ms here.
	wantStatus(t, post(locked, 1), http.StatusAccepted)
	wantStatus(t, post(other, 1), http.StatusAccepted)
	ctx := t.Context()
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{locked.Schema, "invoices"}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}

	const n = 20 // the pool has 16 connections, one of them holding the lock
	answers := make(chan response, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			answers <- post(locked, 2)
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute): // a bound for the failure message, not a measurement
		t.Fatal("requests of the locked tenant still waiting after a minute, RequestTimeout 5s")
	}
	close(answers)
	for r := range answers {
		wantStatus(t, r, http.StatusServiceUnavailable)
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
			t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
		}
	}
	// The lock is still held: the other tenant is served all the same.
	wantStatus(t, post(other, 2), http.StatusAccepted)
}
