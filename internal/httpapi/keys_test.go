package httpapi_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// listedKey is one key of GET /admin/tenants/{id}/keys.
type listedKey struct {
	ID         int64      `json:"id"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

// TestKeyRoutes: keys are listed (never the key), issued (201 {"id",
// "api_key"}) and revoked one at a time (204); a revoked key is refused at
// once while the tenant's other keys keep working; the last use of a key
// is recorded in batches (P18 in docs/architecture.md).
func TestKeyRoutes(t *testing.T) {
	t.Parallel()
	usage := make(chan *storage.KeyUsage, 1)
	b := setup(t, func(o *httpapi.Options) {
		u := storage.NewKeyUsage(o.Catalog, storage.KeyUsageOptions{FlushInterval: time.Hour})
		t.Cleanup(func() { _ = u.Close() })
		o.KeyUsage = u
		usage <- u
	})
	acme := b.active(t, "acme")
	globex := b.active(t, "globex")
	path := "/admin/tenants/" + acme.ID + "/keys"
	render := func(key string) int {
		return b.do(t, request{method: http.MethodPost, host: acme.host(), path: "/v1/invoices/1/pdf", bearer: key}).status
	}
	list := func() []listedKey {
		t.Helper()
		r := b.admin(t, http.MethodGet, path, "")
		wantStatus(t, r, http.StatusOK)
		var body struct {
			Keys []listedKey `json:"keys"`
		}
		decode(t, r.body, &body)
		return body.Keys
	}

	r := b.admin(t, http.MethodPost, path, "")
	wantStatus(t, r, http.StatusCreated)
	var issued struct {
		ID     int64  `json:"id"`
		APIKey string `json:"api_key"`
	}
	decode(t, r.body, &issued)
	if issued.ID <= 0 || storage.CheckAPIKeyFormat(issued.APIKey) != nil {
		t.Fatalf("issue answer %s", r.body)
	}
	if got := render(issued.APIKey); got != http.StatusAccepted {
		t.Fatalf("new key: status %d", got)
	}

	r = b.admin(t, http.MethodGet, path, "")
	for _, secret := range []string{acme.key, issued.APIKey, strings.TrimPrefix(issued.APIKey, storage.APIKeyPrefix)[6:]} {
		if strings.Contains(string(r.body), secret) {
			t.Fatalf("the key list shows a key: %s", r.body)
		}
	}
	keys := list()
	if len(keys) != 2 || keys[1].ID != issued.ID || keys[1].Prefix != issued.APIKey[:storage.APIKeyDisplayLen] ||
		keys[0].Prefix != acme.key[:storage.APIKeyDisplayLen] || keys[1].CreatedAt.IsZero() || keys[1].RevokedAt != nil {
		t.Fatalf("key list %+v", keys)
	}

	// Last use, written in batches.
	if err := (<-usage).Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if keys := list(); keys[1].LastUsedAt == nil || keys[0].LastUsedAt != nil {
		t.Errorf("last use after one request with the new key: %+v", keys)
	}

	// Revoke the provisioning key: refused at once, the new one still works.
	first := strconv.FormatInt(keys[0].ID, 10)
	for range 2 {
		r := b.admin(t, http.MethodDelete, path+"/"+first, "")
		wantStatus(t, r, http.StatusNoContent)
		if len(r.body) != 0 {
			t.Errorf("204 with a body %q", r.body)
		}
	}
	if got := render(acme.key); got != http.StatusUnauthorized {
		t.Errorf("revoked key: status %d, want 401", got)
	}
	if got := render(issued.APIKey); got != http.StatusAccepted {
		t.Errorf("the other key after the revocation: status %d", got)
	}
	if keys := list(); keys[0].RevokedAt == nil || keys[1].RevokedAt != nil {
		t.Errorf("after revoking key %s: %+v", first, keys)
	}

	// Unknown and foreign keys, hostile ids.
	for _, p := range []string{
		path + "/999999", path + "/0", path + "/-1", path + "/x", path + "/1e3", path + "/%201",
		path + "/" + strings.Repeat("9", 30),
		"/admin/tenants/" + globex.ID + "/keys/" + strconv.FormatInt(issued.ID, 10),
		"/admin/tenants/tn_nosuch/keys/" + first,
	} {
		wantStatus(t, b.admin(t, http.MethodDelete, p, ""), http.StatusNotFound)
	}
	if got := render(issued.APIKey); got != http.StatusAccepted {
		t.Errorf("a key revoked through another tenant's path: status %d", got)
	}
	wantStatus(t, b.admin(t, http.MethodGet, "/admin/tenants/tn_nosuch/keys", ""), http.StatusNotFound)

	var revoked int
	audit, _ := b.pg.AuditEntries(context.Background(), acme.ID)
	for _, e := range audit {
		if e.Action == string(tenancy.ActionKeyRevoked) {
			revoked++
		}
	}
	if revoked != 1 {
		t.Errorf("%d key revoked audit entries, want 1", revoked)
	}
}

// unpropagated is a catalog whose writes that revoke access are saved but
// not propagated to other replicas, as storage.Cache reports it when Redis
// refuses the invalidation's publish.
type unpropagated struct{ storage.Catalog }

func (u unpropagated) SetStatus(ctx context.Context, id string, s tenantctx.Status) (tenantctx.Tenant, error) {
	t, err := u.Catalog.SetStatus(ctx, id, s)
	if err != nil {
		return t, err
	}
	return t, storage.ErrInvalidationFailed
}

func (u unpropagated) SetStatusFrom(ctx context.Context, id string, from, s tenantctx.Status) (tenantctx.Tenant, error) {
	t, err := u.Catalog.SetStatusFrom(ctx, id, from, s)
	if err != nil {
		return t, err
	}
	return t, storage.ErrInvalidationFailed
}

func (u unpropagated) RevokeAPIKey(ctx context.Context, id string, keyID int64) (bool, error) {
	revoked, err := u.Catalog.RevokeAPIKey(ctx, id, keyID)
	if err != nil {
		return revoked, err
	}
	return revoked, storage.ErrInvalidationFailed
}

// TestNotPropagatedAdminChangesAre503: a key revocation, a suspension or a
// deletion that is saved but whose invalidation cannot reach the other
// replicas answers 503 with Retry-After, never success: until a retry
// propagates it, another replica may still let the key or the tenant in.
func TestNotPropagatedAdminChangesAre503(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *httpapi.Options) {
		o.Tenancy = tenancy.New(tenancy.Config{Catalog: unpropagated{o.Catalog}, Enqueuer: o.Enqueuer, Documents: o.Documents, SchemaPool: o.Pool})
	})
	acme := b.active(t, "acme")
	keys, err := b.pg.ListAPIKeys(context.Background(), acme.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, call := range []struct{ method, path string }{
		{http.MethodDelete, "/admin/tenants/" + acme.ID + "/keys/" + strconv.FormatInt(keys[0].ID, 10)},
		{http.MethodPost, "/admin/tenants/" + acme.ID + "/suspend"},
		{http.MethodPost, "/admin/tenants/" + acme.ID + "/resume"},
		{http.MethodDelete, "/admin/tenants/" + acme.ID},
	} {
		r := b.admin(t, call.method, call.path, "")
		wantStatus(t, r, http.StatusServiceUnavailable)
		if r.header.Get("Retry-After") == "" || !strings.Contains(r.errorText(t), "retry") {
			t.Errorf("%s %s: 503 without Retry-After or advice: %s", call.method, call.path, r.body)
		}
	}
	// Each change was saved all the same.
	if _, err := b.pg.TenantForAPIKey(context.Background(), acme.key); err == nil {
		t.Error("the key is not revoked in the catalog")
	}
	if tn, _ := b.pg.TenantByID(context.Background(), acme.ID); tn.Status != tenantctx.StatusDeleting {
		t.Errorf("tenant status %s, want deleting", tn.Status)
	}
}
