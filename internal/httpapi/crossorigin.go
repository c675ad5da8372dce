package httpapi

import (
	"net/http"
	"net/url"
	"strings"
)

// newCrossOriginProtection returns the check of the admin routes and the
// dashboard against cross-site request forgery: a browser that holds the
// dashboard's Basic credentials attaches them to any request, also to a
// form another site makes it post (P19 in docs/architecture.md). Requests
// with a safe method (GET, HEAD, OPTIONS) pass. Others are refused (403)
// when Sec-Fetch-Site says they come from another origin, or when their
// Origin is not this Host (net/http.CrossOriginProtection); requests
// without either header, which browsers always send on cross-origin
// writes, pass: curl and other API clients send neither.
func newCrossOriginProtection() *http.CrossOriginProtection {
	p := http.NewCrossOriginProtection()
	p.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused")
	}))
	return p
}

// protectAdmin wraps an admin route or the dashboard: anti-framing headers
// on every answer (no other site may frame the dashboard to trick an
// operator into clicks), then the cross-origin check, then, for a write
// that carries neither Sec-Fetch-Site nor Origin (an old browser), a
// Referer naming another host is refused too.
func (h *Handler) protectAdmin(next http.Handler) http.Handler {
	checked := h.crossOrigin.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if crossSiteReferer(r) {
			writeError(w, http.StatusForbidden, "cross-origin request refused")
			return
		}
		next.ServeHTTP(w, r)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr.Set("X-Frame-Options", "DENY")
		hdr.Set("Content-Security-Policy", "frame-ancestors 'none'")
		checked.ServeHTTP(w, r)
	})
}

// crossSiteReferer reports whether r is a write without Sec-Fetch-Site and
// Origin whose Referer names another host (or cannot be read).
func crossSiteReferer(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	if r.Header.Get("Sec-Fetch-Site") != "" || r.Header.Get("Origin") != "" {
		return false // judged by CrossOriginProtection
	}
	ref := r.Header.Get("Referer")
	if ref == "" {
		return false
	}
	u, err := url.Parse(ref)
	return err != nil || u.Host != r.Host
}

// adminSubtree covers the answers under /admin that no admin route gives
// (the mux's 404 for an unknown path, its 405 for a wrong method): they
// carry the anti-framing headers as well, and with the admin routes
// disabled (no token) everything under /admin is 404, whatever the method.
func (h *Handler) adminSubtree(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p == "/admin" || strings.HasPrefix(p, "/admin/") {
			hdr := w.Header()
			hdr.Set("X-Frame-Options", "DENY")
			hdr.Set("Content-Security-Policy", "frame-ancestors 'none'")
			if h.opts.AdminToken == "" {
				writeError(w, http.StatusNotFound, "not found")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
