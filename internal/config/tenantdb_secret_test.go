package config

import (
	"strings"
	"testing"
)

// TestTenantDatabasesEntryWithoutNameHidesPassword: an entry of
// TENANT_DATABASES written without its "name=" (the URL alone, as in
// DATABASE_URL) is refused without quoting the URL: the part before the
// first '=' (all of it, or up to a query parameter's '=') is its
// password-bearing authority, and the start-up error goes to stderr and
// the log collectors.
func TestTenantDatabasesEntryWithoutNameHidesPassword(t *testing.T) {
	t.Parallel()
	const secret = "s3cretPW"
	for _, v := range []string{
		"postgres://app:" + secret + "@db2/inv",
		"postgres://app:" + secret + "@db2/inv?sslmode=require",
		"eu2=postgres://db2/inv, postgres://app:" + secret + "@db3/inv?sslmode=require",
		"user=app password=" + secret + " host=db2",
	} {
		env := map[string]string{"DATABASE_URL": "postgres://db/inv", "TENANT_DATABASES": v}
		_, err := FromEnv(func(k string) string { return env[k] })
		if err == nil {
			t.Errorf("TENANT_DATABASES with an entry without a name: accepted")
			continue
		}
		if !strings.Contains(err.Error(), "TENANT_DATABASES") {
			t.Errorf("error %q does not name TENANT_DATABASES", err)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the error quotes the URL's password: %v", err)
		}
	}
}
