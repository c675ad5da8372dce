package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header (scheme case-insensitive), or false when there is none.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// tenantSlug resolves the request's tenant slug from Host, or from X-Tenant
// when that fallback is enabled and Host is not of the form
// {slug}{DomainSuffix}; a Host of that form decides even when no tenant has
// its slug.
func (h *Handler) tenantSlug(r *http.Request) (string, error) {
	slug, err := tenantctx.SlugFromHost(r.Host, h.opts.DomainSuffix)
	if err == nil || !h.opts.AllowTenantHeader {
		return slug, err
	}
	hdr := r.Header.Get("X-Tenant")
	if hdr == "" {
		return "", err
	}
	if verr := tenantctx.ValidateSlug(hdr); verr != nil {
		return "", verr
	}
	return hdr, nil
}

// tenant authenticates a tenant route and puts the tenant into the
// request's context (tenantctx.WithTenant). The order of checks is in the
// package documentation; which status may be served is the status policy
// (tenantctx.Status.Decide with tenantctx.Work). Every failure with a
// presented key counts against the client address (failureLimiter); an
// address out of attempts gets 429 before anything is looked up.
func (h *Handler) tenant(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr := h.clientAddr(r)
		if refuseIfLimited(w, h.tenantFails, addr) {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
		defer cancel()
		ctx = withUntimed(ctx, r)
		r = r.WithContext(ctx)
		slug, err := h.tenantSlug(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid tenant host")
			return
		}
		key, ok := bearerToken(r)
		if !ok || storage.CheckAPIKeyFormat(key) != nil {
			if ok {
				h.tenantFails.fail(addr)
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
			writeError(w, http.StatusUnauthorized, "missing or malformed API key")
			return
		}
		// The look-ups below cost the catalog: at most as many of this
		// address's run at once as it has attempts left.
		release, ok := startAuth(w, r, h.tenantFails, addr)
		if !ok {
			return
		}
		defer release() // also released below, once authenticated
		t, ok := h.authorize(w, r, addr, slug, key)
		if !ok {
			return
		}
		release()
		if h.opts.KeyUsage != nil {
			h.opts.KeyUsage.Touch(key)
		}
		info(ctx).tenantID = t.ID
		if !mayWork(w, t) {
			return
		}
		ctx = context.WithValue(ctx, credentialsKey{}, credentials{slug: slug, key: key})
		next.ServeHTTP(w, r.WithContext(tenantctx.WithTenant(ctx, t)))
	})
}

// authorize runs steps 3 and 4 of the package documentation: the key must
// be known and unrevoked, the slug must name a tenant not being deleted,
// and the key must belong to it. It answers the failure (counted against
// addr) and returns false, or returns the tenant.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request, addr, slug, key string) (tenantctx.Tenant, bool) {
	ctx := r.Context()
	// The key first: a caller without a valid key learns nothing about
	// the subdomain, not even whether a tenant has it.
	owner, err := h.opts.Catalog.TenantForAPIKey(ctx, key)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		h.tenantFails.fail(addr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="api", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "invalid API key")
		return tenantctx.Tenant{}, false
	case err != nil:
		h.internalError(w, r, "tenant for api key", err)
		return tenantctx.Tenant{}, false
	}
	t, err := h.opts.Catalog.TenantBySlug(ctx, slug)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		h.tenantFails.fail(addr)
		writeError(w, http.StatusNotFound, "unknown tenant")
		return tenantctx.Tenant{}, false
	case err != nil:
		h.internalError(w, r, "tenant by slug", err)
		return tenantctx.Tenant{}, false
	case t.Status.Decide(tenantctx.Work) == tenantctx.Refuse:
		// Being deleted (or an unknown status): as if it did not exist.
		h.tenantFails.fail(addr)
		writeError(w, http.StatusNotFound, "unknown tenant")
		return tenantctx.Tenant{}, false
	case owner != t.ID:
		h.tenantFails.fail(addr)
		writeError(w, http.StatusForbidden, "API key does not belong to this tenant")
		return tenantctx.Tenant{}, false
	}
	return t, true
}

// credentials are what a tenant request authenticated with, kept in its
// context for stillAuthorized.
type credentials struct{ slug, key string }

type credentialsKey struct{}

// stillAuthorized checks the request's credentials again right before its
// work is enqueued, its PDF served, or its task's state answered: a
// request may wait long after tenant() let it in (for a lock on the
// tenant's tables, for the database or Redis, up to
// Options.RequestTimeout), and a key revoked, or a tenant suspended or
// deleted, meanwhile must not get work in, nor an invoice or a task's
// state out, once the change has answered (the look-ups are the cache's,
// which every change invalidates). It answers as tenant() would and
// returns false when the request may no longer go on. A request that did
// not pass through tenant() (a unit test calling a handler) is not
// checked.
func (h *Handler) stillAuthorized(w http.ResponseWriter, r *http.Request) bool {
	c, ok := r.Context().Value(credentialsKey{}).(credentials)
	if !ok {
		return true
	}
	t, ok := h.authorize(w, r, h.clientAddr(r), c.slug, c.key)
	return ok && mayWork(w, t)
}

// mayWork reports whether t's status lets it work now; otherwise it
// answers what the work waits for (authorize refused the statuses that
// refuse work).
func mayWork(w http.ResponseWriter, t tenantctx.Tenant) bool {
	if t.Status.Decide(tenantctx.Work) == tenantctx.Run {
		return true
	}
	if t.Status == tenantctx.StatusSuspended {
		writeError(w, http.StatusForbidden, "tenant suspended")
	} else {
		writeError(w, http.StatusConflict, "tenant is still being provisioned")
	}
	return false
}
