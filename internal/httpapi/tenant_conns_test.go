package httpapi_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/httpapi"
)

// TestNoisyTenantCannotHoldEveryConnection: one tenant whose invoices are
// locked (a migration, the invoicing app, a move) floods the service with
// more requests at once than the pool has connections (single and bulk
// renders, PDF downloads), each of them waiting for the lock until
// RequestTimeout, and sends the next as soon as one is answered. Meanwhile
// a quiet tenant's requests are served (202, 200 and 404 as without the
// flood), not answered 503 because the noisy tenant holds every connection
// of the pool; and the noisy tenant holds at most its bound of
// connections (Options.TenantDBConns, 4 by default).
func TestNoisyTenantCannotHoldEveryConnection(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *httpapi.Options) { o.RequestTimeout = 3 * time.Second })
	noisy, quiet := b.active(t, "noisy"), b.active(t, "quiet")
	post := func(tn tenant, id int) response {
		return b.do(t, request{method: http.MethodPost, path: "/v1/invoices/" + strconv.Itoa(id) + "/pdf", host: tn.host(), bearer: tn.key})
	}
	// Both tenants' look-ups cached and statements prepared.
	wantStatus(t, post(noisy, 1), http.StatusAccepted)
	wantStatus(t, post(quiet, 1), http.StatusAccepted)

	ctx := t.Context()
	// The lock is held on a connection of its own, not one of the pool's.
	lockConn, err := pgx.Connect(ctx, b.pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer lockConn.Close(context.Background())
	tx, err := lockConn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{noisy.Schema, "invoices"}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}

	// The pool's connections waiting for the lock: the noisy tenant's
	// units of work holding a connection. Counted on a connection of its
	// own, outside a transaction (pg_stat_activity is read once per
	// transaction).
	monitor, err := pgx.Connect(ctx, b.pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer monitor.Close(context.Background())
	waiting := func() int {
		var n int
		err := monitor.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' `).Scan(&n)
		if err != nil {
			t.Errorf("count lock waiters: %v", err)
		}
		return n
	}

	const flood = 48 // the pool has 16 connections
	stop := make(chan struct{})
	var noisyAnswers, noisyOther atomic.Int64
	var wg sync.WaitGroup
	bulk := `{"invoice_ids":[` + strings.TrimSuffix(strings.Repeat("3,", 1000), ",") + `]}`
	for i := range flood {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				var rq request
				switch i % 3 {
				case 0:
					rq = request{method: http.MethodPost, path: "/v1/invoices/2/pdf", host: noisy.host(), bearer: noisy.key}
				case 1:
					rq = request{method: http.MethodPost, path: "/v1/invoices/pdf", host: noisy.host(), bearer: noisy.key, body: strings.NewReader(bulk)}
				default:
					rq = request{method: http.MethodGet, path: "/v1/invoices/2/pdf", host: noisy.host(), bearer: noisy.key}
				}
				r, err := b.try(rq)
				if err != nil {
					t.Errorf("noisy request: %v", err)
					return
				}
				noisyAnswers.Add(1)
				if r.status != http.StatusServiceUnavailable {
					noisyOther.Add(1)
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()

	// The flood has reached the database.
	maxWaiting := 0
	for deadline := time.Now().Add(15 * time.Second); maxWaiting < 4; {
		if time.Now().After(deadline) { // a bound for the failure message, not a measurement
			t.Fatalf("the noisy tenant's requests never reached the lock: %d waiting", maxWaiting)
		}
		maxWaiting = max(maxWaiting, waiting())
		time.Sleep(10 * time.Millisecond)
	}

	// The quiet tenant, while the flood goes on: a render, a bulk render,
	// a download of a PDF not rendered yet, a render of an invoice it does
	// not have.
	for round := range 3 {
		checks := []struct {
			rq   request
			want int
		}{
			{request{method: http.MethodPost, path: "/v1/invoices/" + strconv.Itoa(10+round) + "/pdf", host: quiet.host(), bearer: quiet.key}, http.StatusAccepted},
			{request{method: http.MethodPost, path: "/v1/invoices/pdf", host: quiet.host(), bearer: quiet.key, body: strings.NewReader(`{"invoice_ids":[20,21,22]}`)}, http.StatusAccepted},
			{request{method: http.MethodGet, path: "/v1/invoices/5/pdf", host: quiet.host(), bearer: quiet.key}, http.StatusNotFound},
			{request{method: http.MethodPost, path: "/v1/invoices/999999/pdf", host: quiet.host(), bearer: quiet.key}, http.StatusNotFound},
		}
		for _, c := range checks {
			r := b.doWithin(t, c.rq)
			maxWaiting = max(maxWaiting, waiting())
			if r.status != c.want {
				t.Errorf("quiet tenant, round %d, %s %s during the flood: status %d, want %d; body %s (the noisy tenant's connections waiting for its lock: %d)",
					round, c.rq.method, c.rq.path, r.status, c.want, strings.TrimSpace(string(r.body)), maxWaiting)
			}
		}
	}
	// The default bound (httpapi.DefaultTenantDBConns): 4 of the 16.
	if maxWaiting > 4 {
		t.Errorf("the noisy tenant held %d connections at once, want at most 4 of the pool's 16", maxWaiting)
	}
	t.Logf("noisy tenant: %d answers, %d not 503; at most %d of its connections waiting for its lock", noisyAnswers.Load(), noisyOther.Load(), maxWaiting)
}
