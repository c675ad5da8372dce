package httpapi_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestKeyRevokedInFlightEnqueuesNothing: a request that authenticated
// with a key and then waited (here for a lock on the tenant's invoices,
// as behind a migration) enqueues nothing once that key is revoked
// meanwhile, nor once its tenant is suspended meanwhile: the revocation
// answered 204 and the README promises the key is refused, not that
// work sent with it seconds later still gets in. So for a bulk request.
func TestKeyRevokedInFlightEnqueuesNothing(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(b *bundle, tn tenant) response
		want   int
	}{
		{"revoked", func(b *bundle, tn tenant) response {
			return b.admin(t, http.MethodDelete, "/admin/tenants/"+tn.ID+"/keys/"+strconv.FormatInt(firstKeyID(t, b, tn), 10), "")
		}, http.StatusUnauthorized},
		{"suspended", func(b *bundle, tn tenant) response {
			r := b.admin(t, http.MethodPost, "/admin/tenants/"+tn.ID+"/suspend", "")
			if r.status == http.StatusOK {
				r.status = http.StatusNoContent
			}
			return r
		}, http.StatusForbidden},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := setup(t)
			tn := b.active(t, "acme")
			post := func(id int) response {
				return b.do(t, request{method: http.MethodPost, path: "/v1/invoices/" + strconv.Itoa(id) + "/pdf", host: tn.host(), bearer: tn.key})
			}
			wantStatus(t, post(1), http.StatusAccepted) // look-ups cached, as in a running service

			r := inFlightAcrossChange(t, b, tn, func() response { return post(2) }, func() response { return post(3) },
				func() response { return c.change(b, tn) }, c.want)
			if r.status != c.want {
				t.Errorf("in-flight request: status %d, want %d; body %s", r.status, c.want, r.body)
			}
			if ti, err := b.inspector.GetTaskInfo("default", "invoice:pdf:"+tn.ID+":2"); err == nil {
				t.Errorf("task %s enqueued after the change answered", ti.ID)
			}
		})
		// The bulk route (POST /v1/invoices/pdf) checks again too.
		t.Run(c.name+" bulk", func(t *testing.T) {
			b := setup(t)
			tn := b.active(t, "acme")
			bulk := func(ids string) response {
				return b.do(t, request{method: http.MethodPost, path: "/v1/invoices/pdf", host: tn.host(), bearer: tn.key,
					body: strings.NewReader(`{"invoice_ids":[` + ids + `]}`)})
			}
			wantStatus(t, bulk("1"), http.StatusAccepted) // look-ups cached, as in a running service

			r := inFlightAcrossChange(t, b, tn, func() response { return bulk("2,4") }, func() response { return bulk("3") },
				func() response { return c.change(b, tn) }, c.want)
			if r.status != c.want {
				t.Errorf("in-flight bulk request: status %d, want %d; body %s", r.status, c.want, r.body)
			}
			for _, id := range []string{"2", "4"} {
				if ti, err := b.inspector.GetTaskInfo("default", "invoice:pdf:"+tn.ID+":"+id); err == nil {
					t.Errorf("task %s enqueued after the change answered", ti.ID)
				}
			}
		})
	}
}

// inFlightAcrossChange sends inFlight while tn's invoices table is locked,
// so that it waits after its authentication; while it waits, change runs
// (and must succeed), and fresh, a new request, must get want at once.
// Then the lock is released; it returns inFlight's answer.
func inFlightAcrossChange(t *testing.T, b *bundle, tn tenant, inFlight, fresh, change func() response, want int) response {
	t.Helper()
	ctx := t.Context()
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{tn.Schema, "invoices"}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	answer := make(chan response, 1)
	go func() { answer <- inFlight() }()
	waitForLockWaiter(t, b)

	if r := change(); r.status >= 300 {
		t.Fatalf("the change: %d %s", r.status, r.body)
	}
	wantStatus(t, fresh(), want) // a new request is refused at once
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-answer:
		return r
	case <-time.After(time.Minute): // a bound for the failure message
		t.Fatal("in-flight request not answered")
		return response{}
	}
}

// firstKeyID returns the id of the tenant's first API key.
func firstKeyID(t *testing.T, b *bundle, tn tenant) int64 {
	t.Helper()
	var body struct {
		Keys []struct {
			ID int64 `json:"id"`
		} `json:"keys"`
	}
	decode(t, b.admin(t, http.MethodGet, "/admin/tenants/"+tn.ID+"/keys", "").body, &body)
	if len(body.Keys) == 0 {
		t.Fatal("no key")
	}
	return body.Keys[0].ID
}

// waitForLockWaiter waits until a session of the test's database waits
// for a lock on a table (the in-flight request, behind the lock on the
// tenant's invoices): not any lock waiter of the server, which other
// tests share.
func waitForLockWaiter(t *testing.T, b *bundle) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		n, err := testenv.LockWaiters(t.Context(), b.pool, "", "relation")
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
	}
	t.Fatal("no request waits for the lock")
}
