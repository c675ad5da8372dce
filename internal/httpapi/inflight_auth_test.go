package httpapi_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestKeyRevokedInFlightEnqueuesNothing: a request that authenticated
// with a key and then waited (here for a lock on the tenant's invoices,
// as behind a migration) enqueues nothing once that key is revoked
// meanwhile, nor once its tenant is suspended meanwhile: the revocation
// answered 204 and the README promises the key is refused, not that
// work sent with it seconds later still gets in.
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
			go func() { answer <- post(2) }()
			waitForLockWaiter(t, b)

			wantStatus(t, c.change(b, tn), http.StatusNoContent)
			wantStatus(t, post(3), c.want) // a new request is refused at once
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			var r response
			select {
			case r = <-answer:
			case <-time.After(time.Minute): // a bound for the failure message
				t.Fatal("in-flight request not answered")
			}
			if r.status != c.want {
				t.Errorf("in-flight request: status %d, want %d; body %s", r.status, c.want, r.body)
			}
			if ti, err := b.inspector.GetTaskInfo("default", "invoice:pdf:"+tn.ID+":2"); err == nil {
				t.Errorf("task %s enqueued after the change answered", ti.ID)
			}
		})
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

// waitForLockWaiter waits until a backend waits for a lock.
func waitForLockWaiter(t *testing.T, b *bundle) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var n int
		if err := b.pool.QueryRow(t.Context(), "SELECT count(*) FROM pg_locks WHERE NOT granted").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
	}
	t.Fatal("no request waits for the lock")
}
