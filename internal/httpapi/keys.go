package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
)

// keyBody is one key in GET /admin/tenants/{id}/keys: never the key, only
// what tells it apart and when it was used.
type keyBody struct {
	ID         int64      `json:"id"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

// listKeysBody answers GET /admin/tenants/{id}/keys.
type listKeysBody struct {
	Keys []keyBody `json:"keys"`
}

// listKeys is GET /admin/tenants/{id}/keys: the tenant's keys, revoked ones
// included, oldest first.
func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request) {
	id, ok := pathTenantID(w, r)
	if !ok {
		return
	}
	keys, err := h.opts.Tenancy.ListKeys(r.Context(), id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, "unknown tenant")
		return
	case h.ranOut(w, r, "listing the keys", err, nothingChanged):
		return
	case err != nil:
		h.internalError(w, r, "list api keys", err)
		return
	}
	body := listKeysBody{Keys: make([]keyBody, 0, len(keys))}
	for _, k := range keys {
		body.Keys = append(body.Keys, keyBody{ID: k.ID, Prefix: k.Prefix, CreatedAt: k.CreatedAt, LastUsedAt: k.LastUsedAt, RevokedAt: k.RevokedAt})
	}
	writeJSON(w, http.StatusOK, body)
}

// createKeyBody answers POST /admin/tenants/{id}/keys; the key is shown
// only here.
type createKeyBody struct {
	ID     int64  `json:"id"`
	APIKey string `json:"api_key"`
}

// createKey is POST /admin/tenants/{id}/keys: 201 {"id","api_key"}; a
// tenant being deleted gets no new key (409).
func (h *Handler) createKey(w http.ResponseWriter, r *http.Request) {
	id, ok := pathTenantID(w, r)
	if !ok {
		return
	}
	key, k, err := h.opts.Tenancy.IssueKey(r.Context(), id, tenancy.ActorAdmin)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, "unknown tenant")
	case errors.Is(err, tenancy.ErrRefused):
		writeError(w, http.StatusConflict, "tenant is being deleted")
	case h.ranOut(w, r, "issuing the key", err, issueKept(err)):
	case err != nil:
		h.internalError(w, r, "create api key", err)
	default:
		writeJSON(w, http.StatusCreated, createKeyBody{ID: k.ID, APIKey: key})
	}
}

// revokeKey is DELETE /admin/tenants/{id}/keys/{key_id}: 204, also for a
// key revoked before; 404 for an unknown tenant or a key id the tenant
// does not have; 503 when the revocation is saved but could not be
// propagated to every replica (retry: until then another replica may still
// accept the key).
func (h *Handler) revokeKey(w http.ResponseWriter, r *http.Request) {
	id, ok := pathTenantID(w, r)
	if !ok {
		return
	}
	keyID, err := strconv.ParseInt(r.PathValue("key_id"), 10, 64)
	if err != nil || keyID <= 0 || !isDigits(r.PathValue("key_id")) {
		writeError(w, http.StatusNotFound, "unknown key")
		return
	}
	err = h.opts.Tenancy.RevokeKey(r.Context(), id, keyID, tenancy.ActorAdmin)
	switch {
	case h.notPropagated(w, r, "revoke api key", err):
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, "unknown key")
	case h.ranOut(w, r, "revoking the key", err, "the key may or may not be revoked (the tenant's key list shows it); retrying is safe"):
	case err != nil:
		h.internalError(w, r, "revoke api key", err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// isDigits reports whether s is ASCII decimal digits only.
func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// issueKept says what an issuance the admin deadline cut off left: no key,
// since IssueKey withdraws one whose storing it could not confirm, unless
// that withdrawal failed too (tenancy.ErrKeyLeftIssued) or was still under
// way at the deadline (tenancy.ErrKeyBeingWithdrawn).
func issueKept(err error) string {
	if errors.Is(err, tenancy.ErrKeyLeftIssued) {
		return "a key may have been issued, but it is not shown again: list the tenant's keys, revoke any you did not receive, then retry"
	}
	if errors.Is(err, tenancy.ErrKeyBeingWithdrawn) {
		return "the key this call sent, never shown, may have been stored: it is being withdrawn without this request " +
			"(audited tenant.key_issue_aborted; should that fail, the log names its prefix: revoke it); retry"
	}
	return "no key was issued (one the catalog may have stored meanwhile is revoked): retry"
}
