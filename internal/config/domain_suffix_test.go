package config

import (
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/tenantctx"
)

// TestDomainSuffixThatMatchesNoHostIsRefused: Resolve accepts any
// DOMAIN_SUFFIX that is not empty or dots, so a suffix written with the
// DNS root dot ("example.com."), a port, a scheme or a space starts the
// enqueue service, which then answers every tenant request 400 (malformed
// Host): no Host can ever end in it. Each must be refused at start, or
// (the root dot) be read so that the tenants' hosts resolve.
func TestDomainSuffixThatMatchesNoHostIsRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ suffix, host string }{
		{"example.com.", "acme.example.com"},
		{".example.com.", "acme.example.com."},
		{".example.com:8080", "acme.example.com:8080"},
		{"https://example.com", "acme.example.com"},
	} {
		vars := map[string]string{"DATABASE_URL": "postgres://x", "DOMAIN_SUFFIX": tc.suffix}
		cfg, err := FromEnv(func(k string) string { return vars[k] })
		if err != nil {
			if !strings.Contains(err.Error(), "DOMAIN_SUFFIX") {
				t.Errorf("DOMAIN_SUFFIX=%q: error does not name the variable: %v", tc.suffix, err)
			}
			continue
		}
		if slug, err := tenantctx.SlugFromHost(tc.host, cfg.DomainSuffix); err != nil || slug != "acme" {
			t.Errorf("DOMAIN_SUFFIX=%q accepted (resolved %q), but Host %q gives %q, %v: every tenant request would be 400",
				tc.suffix, cfg.DomainSuffix, tc.host, slug, err)
		}
	}
}
