package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestTenantDatabasesURLsWithCommas: a PostgreSQL URL may hold commas (a
// multi-host URL of a managed service with a standby, a password with a
// comma); TENANT_DATABASES keeps such a URL whole, and an error never
// quotes a piece of a password.
func TestTenantDatabasesURLsWithCommas(t *testing.T) {
	env := map[string]string{"DATABASE_URL": "postgres://app@db/inv",
		"TENANT_DATABASES": "eu2=postgres://app:pa,ss@db2a:5432,db2b:5432/inv?sslmode=verify-full&target_session_attrs=read-write,us1=postgres://db3/inv"}
	c, err := FromEnv(func(k string) string { return env[k] })
	if err != nil {
		if strings.Contains(err.Error(), "ss@") {
			t.Errorf("the error quotes part of the password: %v", err)
		}
		t.Fatalf("FromEnv: %v", err)
	}
	want := map[string]string{
		"eu2": "postgres://app:pa,ss@db2a:5432,db2b:5432/inv?sslmode=verify-full&target_session_attrs=read-write",
		"us1": "postgres://db3/inv",
	}
	if !reflect.DeepEqual(c.TenantDatabases, want) {
		t.Errorf("TENANT_DATABASES = %v, want %v", c.TenantDatabases, want)
	}
}
