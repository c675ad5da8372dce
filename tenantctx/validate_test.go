package tenantctx_test

import (
	"errors"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/tenantctx"
)

func TestValidateSlug(t *testing.T) {
	t.Parallel()
	tests := []struct {
		slug string
		want error
	}{
		{"acme", nil},
		{"globex-corp", nil},
		{"a1b", nil},
		{"abc123", nil},
		{"x" + strings.Repeat("y", 40) + "z", nil}, // 42, the maximum
		{"ab", tenantctx.ErrInvalidSlug},           // too short
		{"x" + strings.Repeat("y", 41) + "z", tenantctx.ErrInvalidSlug},
		{"", tenantctx.ErrInvalidSlug},
		{"Acme", tenantctx.ErrInvalidSlug},
		{"1acme", tenantctx.ErrInvalidSlug},
		{"-acme", tenantctx.ErrInvalidSlug},
		{"acme-", tenantctx.ErrInvalidSlug},
		{"ac_me", tenantctx.ErrInvalidSlug},
		{"ac.me", tenantctx.ErrInvalidSlug},
		{"xn--80ak6aa92e", tenantctx.ErrInvalidSlug},
		{`a";drop schema x;--`, tenantctx.ErrInvalidSlug},
		{"../x", tenantctx.ErrInvalidSlug},
		{"acme\x00", tenantctx.ErrInvalidSlug},
		{"zoë", tenantctx.ErrInvalidSlug},
		{"tenant_x", tenantctx.ErrInvalidSlug},
		{strings.Repeat("a", 10<<10), tenantctx.ErrInvalidSlug},
		{"www", tenantctx.ErrReservedSlug},
		{"admin", tenantctx.ErrReservedSlug},
		{"api", tenantctx.ErrReservedSlug},
	}
	for _, tt := range tests {
		name := tt.slug
		if len(name) > 50 {
			name = name[:50]
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := tenantctx.ValidateSlug(tt.slug)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("ValidateSlug(%.50q) = %v, want %v", tt.slug, err, tt.want)
			}
		})
	}
}

func TestValidateSchema(t *testing.T) {
	t.Parallel()
	good := []string{"tenant_acme", "tenant_globex_corp", "tenant_a1"}
	bad := []string{"", "tenant_", "public", "pg_catalog", "tenancy", "Tenant_x", "tenant_x-y",
		`tenant_x"y`, "tenant_ü", "tenant_x;drop", "tenant_" + strings.Repeat("a", 43), "tenant_a\x00"}
	for _, s := range good {
		if err := tenantctx.ValidateSchema(s); err != nil {
			t.Errorf("ValidateSchema(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range bad {
		if err := tenantctx.ValidateSchema(s); !errors.Is(err, tenantctx.ErrInvalidSchema) {
			t.Errorf("ValidateSchema(%q) = %v, want ErrInvalidSchema", s, err)
		}
	}
}

func TestSchemaForSlugAlwaysValid(t *testing.T) {
	t.Parallel()
	for _, slug := range []string{"acme", "globex-corp", "a-b-c", "x" + strings.Repeat("9", 40) + "z"} {
		if err := tenantctx.ValidateSchema(tenantctx.SchemaForSlug(slug)); err != nil {
			t.Errorf("schema of valid slug %q is invalid: %v", slug, err)
		}
	}
	if got := tenantctx.SchemaForSlug("globex-corp"); got != "tenant_globex_corp" {
		t.Errorf("SchemaForSlug = %q", got)
	}
}

func TestValidateID(t *testing.T) {
	t.Parallel()
	id := tenantctx.NewID()
	if err := tenantctx.ValidateID(id); err != nil {
		t.Fatalf("NewID() = %q is invalid: %v", id, err)
	}
	if id == tenantctx.NewID() {
		t.Fatal("NewID returned the same id twice")
	}
	for _, bad := range []string{"", "Tn_x", "tn x", "a';--", strings.Repeat("a", 65), "_x", "tn_\x00", "../x"} {
		if err := tenantctx.ValidateID(bad); !errors.Is(err, tenantctx.ErrInvalidID) {
			t.Errorf("ValidateID(%q) = %v, want ErrInvalidID", bad, err)
		}
	}
}

func TestNewTenant(t *testing.T) {
	t.Parallel()
	tn, err := tenantctx.New("acme", "Acme Inc.", "pro")
	if err != nil {
		t.Fatal(err)
	}
	if tn.Status != tenantctx.StatusProvisioning || tn.Schema != "tenant_acme" {
		t.Fatalf("New = %+v", tn)
	}
	if err := tn.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	tn.Schema = "tenant_other"
	if err := tn.Validate(); err == nil {
		t.Fatal("Validate accepted a schema that does not match the slug")
	}
	if _, err := tenantctx.New("www", "x", ""); !errors.Is(err, tenantctx.ErrReservedSlug) {
		t.Fatalf("New(www) = %v", err)
	}
}

func TestStatusTransitions(t *testing.T) {
	t.Parallel()
	allowed := map[[2]tenantctx.Status]bool{
		{tenantctx.StatusProvisioning, tenantctx.StatusActive}:   true,
		{tenantctx.StatusProvisioning, tenantctx.StatusDeleting}: true,
		{tenantctx.StatusActive, tenantctx.StatusSuspended}:      true,
		{tenantctx.StatusActive, tenantctx.StatusDeleting}:       true,
		{tenantctx.StatusSuspended, tenantctx.StatusActive}:      true,
		{tenantctx.StatusSuspended, tenantctx.StatusDeleting}:    true,
	}
	for _, from := range tenantctx.Statuses {
		for _, to := range tenantctx.Statuses {
			want := from == to || allowed[[2]tenantctx.Status{from, to}]
			if got := from.CanTransition(to); got != want {
				t.Errorf("%s -> %s: got %v, want %v", from, to, got, want)
			}
		}
	}
	if _, err := tenantctx.ParseStatus("deleted"); !errors.Is(err, tenantctx.ErrInvalidStatus) {
		t.Errorf("ParseStatus(deleted) = %v", err)
	}
}

// slugRule restates the slug rule of docs/architecture.md independently of the package, for
// the fuzz targets.
var slugRule = regexp.MustCompile(`^[a-z][a-z0-9-]{1,40}[a-z0-9]$`)

func FuzzValidateSlug(f *testing.F) {
	for _, s := range []string{"acme", "a-b", "www", "A", `a";drop`, "tenant_x", "zoë", strings.Repeat("a", 43)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if err := tenantctx.ValidateSlug(s); err != nil {
			return
		}
		if !slugRule.MatchString(s) || tenantctx.IsReserved(s) {
			t.Fatalf("ValidateSlug accepted %q, which the rules reject", s)
		}
		if err := tenantctx.ValidateSchema(tenantctx.SchemaForSlug(s)); err != nil {
			t.Fatalf("valid slug %q maps to invalid schema: %v", s, err)
		}
	})
}

// TestValidateIDAndSchemaMatchTheirPatterns holds ValidateID and
// ValidateSchema, which check bytes (they run several times per task), to
// the regular expressions they document: every string of up to three bytes
// over an alphabet of allowed, disallowed and boundary bytes, alone and
// after the schema prefix, the lengths at the limits, and random strings.
func TestValidateIDAndSchemaMatchTheirPatterns(t *testing.T) {
	t.Parallel()
	idRE := regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	schemaRE := regexp.MustCompile(`^tenant_[a-z0-9_]{1,42}$`)
	check := func(s string) {
		t.Helper()
		if got, want := tenantctx.ValidateID(s) == nil, idRE.MatchString(s); got != want {
			t.Errorf("ValidateID(%q) accepts: %v, the pattern: %v", s, got, want)
		}
		if got, want := tenantctx.ValidateSchema(s) == nil, schemaRE.MatchString(s); got != want {
			t.Errorf("ValidateSchema(%q) accepts: %v, the pattern: %v", s, got, want)
		}
	}
	alphabet := []string{"a", "z", "0", "9", "_", "-", "`", "{", "/", ":", "@", "[", "A", "Z", " ", "\n", "\x00", "\xff", "ü"}
	var all func(prefix string, n int)
	all = func(prefix string, n int) {
		check(prefix)
		check("tenant_" + prefix)
		check("tenant" + prefix)
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			all(prefix+c, n-1)
		}
	}
	all("", 3)
	for _, n := range []int{41, 42, 43, 62, 63, 64, 65} {
		for _, c := range []string{"a", "_", "-", "9"} {
			check(strings.Repeat(c, n))
			check("a" + strings.Repeat(c, n))
			check("tenant_" + strings.Repeat(c, n))
			check("tenant_" + strings.Repeat(c, n) + "\n")
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const bytes = "abcxyz0189_-A.\n\x00\xff"
	for range 20000 {
		b := make([]byte, rng.IntN(70))
		for i := range b {
			b[i] = bytes[rng.IntN(len(bytes))]
		}
		check(string(b))
		check("tenant_" + string(b))
	}
}
