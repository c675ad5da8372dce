package tenantctx

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Limits of the identifier rules.
const (
	// MinSlugLen and MaxSlugLen bound a slug: a letter, 1..40 of [a-z0-9-],
	// and a final letter or digit.
	MinSlugLen = 3
	MaxSlugLen = 42
	// MaxSchemaLen is len("tenant_") + MaxSlugLen, well under PostgreSQL's 63.
	MaxSchemaLen = len(SchemaPrefix) + MaxSlugLen
	// MaxIDLen bounds a tenant id.
	MaxIDLen = 64
	// SchemaPrefix starts every tenant schema name.
	SchemaPrefix = "tenant_"
)

// Errors returned by validation; match them with errors.Is.
var (
	ErrInvalidSlug   = errors.New("invalid tenant slug")
	ErrReservedSlug  = errors.New("reserved tenant slug")
	ErrInvalidSchema = errors.New("invalid tenant schema")
	ErrInvalidID     = errors.New("invalid tenant id")
)

var (
	slugRE = regexp.MustCompile(`^[a-z][a-z0-9-]{1,40}[a-z0-9]$`)
)

// reserved slugs would shadow the service's own hosts or confuse operators.
var reserved = map[string]bool{
	"www": true, "admin": true, "api": true, "app": true, "dashboard": true,
	"mail": true, "smtp": true, "imap": true, "pop": true, "ftp": true,
	"static": true, "assets": true, "cdn": true, "status": true, "help": true,
	"support": true, "docs": true, "blog": true, "billing": true, "auth": true,
	"login": true, "root": true, "system": true, "public": true, "tenancy": true,
	"postgres": true, "localhost": true, "internal": true, "metrics": true,
}

// IsReserved reports whether slug is reserved for the service itself.
func IsReserved(slug string) bool { return reserved[slug] }

// ValidateSlug checks slug against ^[a-z][a-z0-9-]{1,40}[a-z0-9]$ and the
// reserved list. The length is checked before the regular expression.
func ValidateSlug(slug string) error {
	if len(slug) < MinSlugLen || len(slug) > MaxSlugLen {
		return fmt.Errorf("%w: length %d, want %d..%d", ErrInvalidSlug, len(slug), MinSlugLen, MaxSlugLen)
	}
	if !slugRE.MatchString(slug) {
		return fmt.Errorf("%w: %q must be a lowercase DNS label (a-z, 0-9, '-'), starting with a letter", ErrInvalidSlug, slug)
	}
	if strings.Contains(slug, "--") {
		// Punycode-like labels (xn--) and doubled hyphens are refused: they
		// make look-alike subdomains.
		return fmt.Errorf("%w: %q contains '--'", ErrInvalidSlug, slug)
	}
	if reserved[slug] {
		return fmt.Errorf("%w: %q", ErrReservedSlug, slug)
	}
	return nil
}

// SchemaForSlug returns the schema name of a slug: "tenant_" + slug with
// '-' replaced by '_'. It does not validate; call ValidateSlug first.
func SchemaForSlug(slug string) string {
	return SchemaPrefix + strings.ReplaceAll(slug, "-", "_")
}

// ValidateSchema checks a schema name against ^tenant_[a-z0-9_]{1,42}$.
// Every schema name that reaches SQL passes through here.
func ValidateSchema(schema string) error {
	if len(schema) <= len(SchemaPrefix) || len(schema) > MaxSchemaLen {
		return fmt.Errorf("%w: length %d", ErrInvalidSchema, len(schema))
	}
	if !strings.HasPrefix(schema, SchemaPrefix) || !onlyBytes(schema[len(SchemaPrefix):], schemaByte) {
		return fmt.Errorf("%w: %q", ErrInvalidSchema, schema)
	}
	return nil
}

// ValidateID checks a tenant id: 1..64 of [a-z0-9_-], starting with a
// letter or digit. Ids come from task payloads, so they are hostile input.
func ValidateID(id string) error {
	if len(id) == 0 || len(id) > MaxIDLen {
		return fmt.Errorf("%w: length %d, want 1..%d", ErrInvalidID, len(id), MaxIDLen)
	}
	if !lowerOrDigit(id[0]) || !onlyBytes(id[1:], idByte) {
		return fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	return nil
}

// ValidateSchema and ValidateID run for every task (several times), so
// they check bytes instead of running a regular expression; the tests hold
// them to ^tenant_[a-z0-9_]{1,42}$ and ^[a-z0-9][a-z0-9_-]{0,63}$.

// lowerOrDigit reports whether c is one of [a-z0-9].
func lowerOrDigit(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// schemaByte reports whether c may follow a schema's prefix: [a-z0-9_].
func schemaByte(c byte) bool { return lowerOrDigit(c) || c == '_' }

// idByte reports whether c may follow an id's first byte: [a-z0-9_-].
func idByte(c byte) bool { return lowerOrDigit(c) || c == '_' || c == '-' }

// onlyBytes reports whether every byte of s passes ok.
func onlyBytes(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns a fresh random tenant id: "tn_" and 26 base32 characters
// (128 random bits).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return "tn_" + idEncoding.EncodeToString(b[:])
}
