package httpapi_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/invoicing/tenantworker/storage"
)

// TestKeyListShowsEveryUnrevokedKeyPastTheBound: docs/operations.md promises that
// the key list holds every unrevoked key ("A leaked key": it is how an
// operator finds a key to revoke). A tenant with more unrevoked keys than
// storage.MaxAPIKeysListed lost its oldest ones from the list, the
// tenant's first key among them, with nothing in the answer saying so: a
// leaked key among them could not be found, nor its id to revoke it.
func TestKeyListShowsEveryUnrevokedKeyPastTheBound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	// As many keys again as the bound, every one unrevoked, issued after
	// the tenant's first key; and a revoked one after them.
	if _, err := b.pool.Exec(context.Background(), `
		INSERT INTO tenancy.api_keys (tenant_id, key_hash, prefix)
		SELECT $1, md5(g::text) || md5(g::text), 'tk_live'
		  FROM generate_series(1, $2::int) AS g`, acme.ID, storage.MaxAPIKeysListed); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(context.Background(), `
		INSERT INTO tenancy.api_keys (tenant_id, key_hash, prefix, revoked_at)
		VALUES ($1, md5('revoked') || md5('revoked'), 'tk_gone', now())`, acme.ID); err != nil {
		t.Fatal(err)
	}
	r := b.admin(t, http.MethodGet, "/admin/tenants/"+acme.ID+"/keys", "")
	wantStatus(t, r, http.StatusOK)
	var body struct {
		Keys []listedKey `json:"keys"`
	}
	decode(t, r.body, &body)
	var first bool
	unrevoked := 0
	for i, k := range body.Keys {
		if i > 0 && k.ID <= body.Keys[i-1].ID {
			t.Fatalf("key list not oldest first at %d: %d after %d", i, k.ID, body.Keys[i-1].ID)
		}
		if k.RevokedAt == nil {
			unrevoked++
		}
		first = first || k.Prefix == acme.key[:storage.APIKeyDisplayLen]
	}
	if want := storage.MaxAPIKeysListed + 1; unrevoked != want || !first {
		t.Errorf("the key list (%d keys) shows %d unrevoked keys, want every one of the %d; the tenant's first key among them: %t",
			len(body.Keys), unrevoked, want, first)
	}
}
