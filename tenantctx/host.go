package tenantctx

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"unicode/utf8"
)

// ErrInvalidHost is returned by SlugFromHost for a Host that does not name
// exactly one tenant subdomain of the suffix.
var ErrInvalidHost = errors.New("invalid tenant host")

// maxHostLen bounds a Host header: a DNS name is at most 253 bytes, plus
// a port.
const maxHostLen = 253 + len(":65535")

// SlugFromHost resolves the tenant slug of an HTTP Host header under
// suffix (e.g. ".example.com", a leading dot optional): it strips the port,
// lowercases ASCII letters, and accepts exactly one valid slug label before
// the suffix. It rejects other domains (acme.example.com.evil.com), nested
// labels (a.b.example.com), the bare suffix, IP literals, empty and
// over-long labels, and any byte outside ASCII: a host is compared in its
// ASCII form only, so that Unicode case folding cannot turn another name
// into a tenant's ("\u212Acme", with U+212A KELVIN SIGN, lowercases to
// "kcme"). net/http refuses such a Host header, but not the host of an
// absolute-form request target, which becomes Request.Host.
func SlugFromHost(host, suffix string) (string, error) {
	if len(host) == 0 || len(host) > maxHostLen {
		return "", fmt.Errorf("%w: length %d", ErrInvalidHost, len(host))
	}
	suffix = asciiLower(strings.TrimSpace(suffix))
	if suffix == "" || suffix == "." {
		return "", fmt.Errorf("%w: empty domain suffix", ErrInvalidHost)
	}
	if !strings.HasPrefix(suffix, ".") {
		suffix = "." + suffix
	}
	for i := 0; i < len(host); i++ {
		if host[i] >= utf8.RuneSelf {
			return "", fmt.Errorf("%w: not ASCII", ErrInvalidHost)
		}
	}
	h := host
	if strings.HasPrefix(h, "[") {
		return "", fmt.Errorf("%w: IP literal", ErrInvalidHost)
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		port := h[i+1:]
		if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
			return "", fmt.Errorf("%w: bad port", ErrInvalidHost)
		}
		h = h[:i]
	}
	h = asciiLower(h)
	h = strings.TrimSuffix(h, ".") // a fully qualified "acme.example.com." is the same host
	if net.ParseIP(h) != nil {
		return "", fmt.Errorf("%w: IP literal", ErrInvalidHost)
	}
	label, ok := strings.CutSuffix(h, suffix)
	if !ok {
		return "", fmt.Errorf("%w: not under %s", ErrInvalidHost, suffix)
	}
	if label == "" || strings.Contains(label, ".") {
		return "", fmt.Errorf("%w: want exactly one label before %s", ErrInvalidHost, suffix)
	}
	if err := ValidateSlug(label); err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidHost, err)
	}
	return label, nil
}

// asciiLower lowercases the ASCII letters of s and nothing else
// (strings.ToLower folds non-ASCII letters too, some of them into ASCII).
func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, s)
}
