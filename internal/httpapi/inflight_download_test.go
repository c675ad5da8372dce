package httpapi_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestKeyRevokedInFlightDownloadsNothing: a PDF download that
// authenticated with a key and then waited (here for a lock on the
// tenant's invoices, as behind a migration or a busy tenant database, up
// to REQUEST_TIMEOUT) gets no PDF once that key is revoked meanwhile, nor
// once its tenant is suspended or its deletion requested meanwhile: the
// change has answered, and the README promises the key (the tenant) is
// refused. The download served the invoice, a customer's data, to the
// holder of a leaked key after its revocation answered 204.
func TestKeyRevokedInFlightDownloadsNothing(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(b *bundle, tn tenant) response
		want   int
	}{
		{"revoked", func(b *bundle, tn tenant) response {
			return b.admin(t, http.MethodDelete, "/admin/tenants/"+tn.ID+"/keys/"+strconv.FormatInt(firstKeyID(t, b, tn), 10), "")
		}, http.StatusUnauthorized},
		{"suspended", func(b *bundle, tn tenant) response {
			return b.admin(t, http.MethodPost, "/admin/tenants/"+tn.ID+"/suspend", "")
		}, http.StatusForbidden},
		{"deleted", func(b *bundle, tn tenant) response {
			return b.admin(t, http.MethodDelete, "/admin/tenants/"+tn.ID, "")
		}, http.StatusNotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := setup(t)
			tn := b.active(t, "acme")
			id, _ := b.storeDocument(t, tn, "INV-1", []byte("%PDF-1.4 the customer's invoice"))
			get := func() response {
				return b.do(t, request{method: http.MethodGet, path: "/v1/invoices/" + strconv.FormatInt(id, 10) + "/pdf", host: tn.host(), bearer: tn.key})
			}
			wantStatus(t, get(), http.StatusOK) // look-ups cached, as in a running service

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
			go func() { answer <- get() }()
			waitForLockWaiter(t, b)

			if r := c.change(b, tn); r.status >= 300 {
				t.Fatalf("%s: %d %s", c.name, r.status, r.body)
			}
			wantStatus(t, get(), c.want) // a new request is refused at once
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			var r response
			select {
			case r = <-answer:
			case <-time.After(time.Minute): // a bound for the failure message
				t.Fatal("in-flight download not answered")
			}
			if r.status != c.want {
				t.Errorf("in-flight download: status %d, want %d; body %.60q", r.status, c.want, r.body)
			}
		})
	}
}
