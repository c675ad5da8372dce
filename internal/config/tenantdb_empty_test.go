package config

import (
	"reflect"
	"testing"
)

// TestTenantDatabasesEmptyEntriesAreIgnored: an empty TENANT_DATABASES
// entry (a trailing comma, two commas in a row between entries, a comma
// followed by spaces) is ignored, as a leading comma is; it is not glued
// to the URL before it, whose database "inv," the start then found
// missing (3D000) and whose sslmode "disable," did not parse. Two commas
// in a row inside a URL (its password) stay in it.
func TestTenantDatabasesEmptyEntriesAreIgnored(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		value string
		want  map[string]string
	}{
		{"eu2=postgres://db2/inv,", map[string]string{"eu2": "postgres://db2/inv"}},
		{"eu2=postgres://db2/inv, ", map[string]string{"eu2": "postgres://db2/inv"}},
		{"eu2=postgres://db2/inv,,", map[string]string{"eu2": "postgres://db2/inv"}},
		{",eu2=postgres://db2/inv", map[string]string{"eu2": "postgres://db2/inv"}},
		{"eu2=postgres://db2/inv?sslmode=disable,", map[string]string{"eu2": "postgres://db2/inv?sslmode=disable"}},
		{"eu2=host=db2 dbname=inv,", map[string]string{"eu2": "host=db2 dbname=inv"}},
		{"eu2=postgres://db2/inv,,us1=postgres://db3/inv", map[string]string{"eu2": "postgres://db2/inv", "us1": "postgres://db3/inv"}},
		{"eu2=postgres://db2/inv , ,us1=postgres://db3/inv,", map[string]string{"eu2": "postgres://db2/inv", "us1": "postgres://db3/inv"}},
		{"eu2=postgres://app:pa,,ss@db2/inv", map[string]string{"eu2": "postgres://app:pa,,ss@db2/inv"}},
	} {
		c, err := FromEnv(envWithDatabase(map[string]string{"TENANT_DATABASES": tc.value}))
		if err != nil {
			t.Errorf("TENANT_DATABASES=%q: %v", tc.value, err)
			continue
		}
		if !reflect.DeepEqual(c.TenantDatabases, tc.want) {
			t.Errorf("TENANT_DATABASES=%q: %q, want %q", tc.value, c.TenantDatabases, tc.want)
		}
	}
}
