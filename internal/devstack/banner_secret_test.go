package devstack

import (
	"bytes"
	"strings"
	"testing"
)

// TestBannerHidesDatabasePassword: with DATABASE_URL set, the banner's
// readable part says "DATABASE_URL (kept)" rather than the URL, but the
// DEV_READY line printed to stdout carries the URL with its password.
func TestBannerHidesDatabasePassword(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := writeBanner(&buf, Info{DatabaseURL: "postgres://app:s3cretPW@db.internal/inv"}, nil); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); strings.Contains(out, "s3cretPW") {
		t.Fatalf("banner prints DATABASE_URL's password:\n%s", out)
	}
}
