package config

import (
	"strings"
	"testing"
)

// TestTenantDatabasesCommaInPasswordIsNotQuoted: a comma left unencoded
// in a TENANT_DATABASES password and followed by letters and '=' (against
// the grammar: such a comma starts the next entry) splits the URL; the
// start-up error must not quote the text after that comma (a piece of
// the password) as a database name, nor any other piece of the password,
// and must say which entry is wrong (by its position) and to
// percent-encode the comma. A well-formed entry's name is still quoted.
func TestTenantDatabasesCommaInPasswordIsNotQuoted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		value, entry string
		secrets      []string
	}{
		// The password is "pa,zork=quux": the piece "zork=quux@db2/inv"
		// reads as a database "zork".
		{"eu2=postgres://app:pa,zork=quux@db2/inv,us1=postgres://db3/inv", "entry 2", []string{"zork", "quux"}},
		// The password starts with the comma: "postgres://app:" parses
		// alone (host app), so only the piece is reported.
		{"eu2=postgres://app:,hunter=plugh@db2/inv", "entry 2", []string{"hunter", "plugh"}},
		// The piece's "name" is not a valid one (upper case).
		{"eu2=postgres://app:pa,Zebra=quux@db2/inv", "entry 2", []string{"Zebra", "quux"}},
		// The piece's "name" is the entry's own: not "named twice".
		{"us1=postgres://db3/inv,eu2=postgres://app:pa,eu2x=quux@db2/inv", "entry 3", []string{"eu2x", "quux"}},
		// Keyword/value settings (percent-encoding is the URL form's).
		{"eu2=host=db2 password=pa,hunter=plugh dbname=inv", "entry 2", []string{"hunter", "plugh"}},
	} {
		_, err := FromEnv(envWithDatabase(map[string]string{"TENANT_DATABASES": tc.value}))
		if err == nil {
			t.Errorf("TENANT_DATABASES=%s: accepted", tc.value)
			continue
		}
		msg := err.Error()
		for _, s := range tc.secrets {
			if strings.Contains(msg, s) {
				t.Errorf("TENANT_DATABASES=%s: the error quotes %q, a piece of the password: %v", tc.value, s, err)
			}
		}
		for _, want := range []string{"TENANT_DATABASES", tc.entry, "%2C"} {
			if !strings.Contains(msg, want) {
				t.Errorf("TENANT_DATABASES=%s: the error does not say %q: %v", tc.value, want, err)
			}
		}
	}

	// A well-formed entry after the first whose URL is wrong is still
	// named.
	_, err := FromEnv(envWithDatabase(map[string]string{"TENANT_DATABASES": "eu2=postgres://db2/inv,us1=postgres://db3:x/inv"}))
	if err == nil || !strings.Contains(err.Error(), `"us1"`) {
		t.Errorf("a URL that does not parse in entry 2: error %v, want it to name us1", err)
	}
}
