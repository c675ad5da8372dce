package tenantctx_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/invoicing/tenantworker/tenantctx"
)

func TestSlugFromHost(t *testing.T) {
	t.Parallel()
	const suffix = ".example.com"
	tests := []struct {
		host string
		want string // "" means rejected
	}{
		{"acme.example.com", "acme"},
		{"acme.example.com:8080", "acme"},
		{"ACME.Example.COM", "acme"},
		{"acme.example.com.", "acme"},
		{"globex-corp.example.com", "globex-corp"},
		{"acme.example.com.evil.com", ""},
		{"a.b.example.com", ""},
		{"acme..example.com", ""},
		{".example.com", ""},
		{"example.com", ""},
		{"evilexample.com", ""},
		{"acmeexample.com", ""},
		{"127.0.0.1", ""},
		{"127.0.0.1:8080", ""},
		{"[::1]:8080", ""},
		{"::1", ""},
		{"", ""},
		{"www.example.com", ""},
		{"admin.example.com", ""},
		{"ab.example.com", ""},
		{"acme.example.com:", ""},
		{"acme.example.com:99999x", ""},
		{"acme.example.com/x", ""},
		{"acme.example.com\x00", ""},
		{"ac\x00me.example.com", ""},
		{"ac_me.example.com", ""},
		{"zoë.example.com", ""},
		// Unicode case folding must not turn a non-ASCII host into a
		// tenant's: U+212A KELVIN SIGN lowercases to an ASCII "k".
		{"\u212Acme.example.com", ""},
		{"\u212A\u212A\u212A.example.com", ""},
		{strings.Repeat("a", 64) + ".example.com", ""},
		{strings.Repeat("a.", 200) + "example.com", ""},
	}
	for _, tt := range tests {
		t.Run(strings.ToValidUTF8(tt.host, "?"), func(t *testing.T) {
			t.Parallel()
			got, err := tenantctx.SlugFromHost(tt.host, suffix)
			if tt.want == "" {
				if err == nil || !errors.Is(err, tenantctx.ErrInvalidHost) {
					t.Fatalf("SlugFromHost(%q) = %q, %v; want ErrInvalidHost", tt.host, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("SlugFromHost(%q) = %q, %v; want %q", tt.host, got, err, tt.want)
			}
		})
	}
}

func TestSlugFromHostSuffixForms(t *testing.T) {
	t.Parallel()
	for _, suffix := range []string{".localhost", "localhost", ".LOCALHOST"} {
		got, err := tenantctx.SlugFromHost("acme.localhost:8080", suffix)
		if err != nil || got != "acme" {
			t.Errorf("suffix %q: got %q, %v", suffix, got, err)
		}
	}
	if _, err := tenantctx.SlugFromHost("acme.localhost", ""); err == nil {
		t.Error("empty suffix accepted")
	}
	// A suffix is matched byte for byte after ASCII lowercasing only.
	if got, err := tenantctx.SlugFromHost("acme.\u212Aiwi.test", ".kiwi.test"); err == nil {
		t.Errorf("non-ASCII suffix accepted: %q", got)
	}
}

func FuzzSlugFromHost(f *testing.F) {
	for _, h := range []string{"acme.example.com", "acme.example.com:80", "a.b.example.com", "[::1]:1", "1.2.3.4",
		"acme.example.com.evil.com", "ACME.example.com", "x\x00.example.com", "\u212Acme.example.com"} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, host string) {
		slug, err := tenantctx.SlugFromHost(host, ".example.com")
		if err != nil {
			return
		}
		if tenantctx.ValidateSlug(slug) != nil || !slugRule.MatchString(slug) {
			t.Fatalf("SlugFromHost(%q) accepted invalid slug %q", host, slug)
		}
		for i := 0; i < len(host); i++ {
			if host[i] >= utf8.RuneSelf {
				t.Fatalf("SlugFromHost(%q) = %q, but the host is not ASCII", host, slug)
			}
		}
		// The accepted host must really be <slug>.example.com with an optional
		// port and trailing dot.
		h := strings.ToLower(host)
		if i := strings.LastIndexByte(h, ':'); i >= 0 {
			h = h[:i]
		}
		h = strings.TrimSuffix(h, ".")
		if h != slug+".example.com" {
			t.Fatalf("SlugFromHost(%q) = %q, but host is not <slug>.example.com", host, slug)
		}
	})
}
