package invoice

import (
	"regexp"
	"strings"
	"testing"
)

// TestStatementsForQualifyEveryTable: every table the tenant-written
// statements name is qualified by the tenant's schema, each requires the
// pin to be the tenant's schema once, and nothing else changed.
func TestStatementsForQualifyEveryTable(t *testing.T) {
	s, err := statementsFor("tenant_acme")
	if err != nil {
		t.Fatal(err)
	}
	tables := regexp.MustCompile(`(\S*)\b(invoices|customers|line_items|invoice_documents)\b`)
	for name, pair := range map[string][2]string{"load": {loadSQL, s.load}, "record": {recordDocumentSQL, s.record}} {
		plain, written := pair[0], pair[1]
		n := 0
		for _, m := range tables.FindAllStringSubmatch(written, -1) {
			if strings.HasPrefix(m[0], "i.") || strings.HasPrefix(m[0], "li.") { // a column reference such as "i.id"
				continue
			}
			n++
			if m[1] != `"tenant_acme".` {
				t.Errorf("%s: table %s not qualified: %q", name, m[2], m[0])
			}
		}
		if n == 0 {
			t.Errorf("%s: no table found", name)
		}
		cond := ` AND pg_catalog.current_setting('search_path') = '"tenant_acme"'`
		if strings.Count(written, cond) != 1 {
			t.Errorf("%s: want the condition on the pin once:\n%s", name, written)
		}
		if got := strings.ReplaceAll(strings.ReplaceAll(written, cond, ""), `"tenant_acme".`, ""); got != plain {
			t.Errorf("%s: the text differs beyond the qualification:\n%s", name, got)
		}
	}
}
