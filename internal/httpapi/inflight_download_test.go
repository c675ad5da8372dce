package httpapi_test

import (
	"net/http"
	"strconv"
	"testing"
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
	for _, c := range credentialChanges(t) {
		t.Run(c.name, func(t *testing.T) {
			b := setup(t)
			tn := b.active(t, "acme")
			id, _ := b.storeDocument(t, tn, "INV-1", []byte("%PDF-1.4 the customer's invoice"))
			get := func() response {
				return b.do(t, request{method: http.MethodGet, path: "/v1/invoices/" + strconv.FormatInt(id, 10) + "/pdf", host: tn.host(), bearer: tn.key})
			}
			wantStatus(t, get(), http.StatusOK) // look-ups cached, as in a running service

			r := inFlightAcrossChange(t, b, tn, get, get, func() response { return c.change(b, tn) }, c.want)
			if r.status != c.want {
				t.Errorf("in-flight download: status %d, want %d; body %.60q", r.status, c.want, r.body)
			}
		})
	}
}

// credentialChange is a change that takes a request's right away: a
// revoked key, a suspended or deleted tenant, and the status a request
// made after it gets.
type credentialChange struct {
	name   string
	change func(b *bundle, tn tenant) response
	want   int
}

// credentialChanges are the changes an in-flight request must see once
// they have answered.
func credentialChanges(t *testing.T) []credentialChange {
	return []credentialChange{
		{"revoked", func(b *bundle, tn tenant) response {
			return b.admin(t, http.MethodDelete, "/admin/tenants/"+tn.ID+"/keys/"+strconv.FormatInt(firstKeyID(t, b, tn), 10), "")
		}, http.StatusUnauthorized},
		{"suspended", func(b *bundle, tn tenant) response {
			return b.admin(t, http.MethodPost, "/admin/tenants/"+tn.ID+"/suspend", "")
		}, http.StatusForbidden},
		{"deleted", func(b *bundle, tn tenant) response {
			return b.admin(t, http.MethodDelete, "/admin/tenants/"+tn.ID, "")
		}, http.StatusNotFound},
	}
}
