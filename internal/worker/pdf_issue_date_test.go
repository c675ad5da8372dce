package worker_test

import (
	"regexp"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/tasks"
)

// TestPDFIssueDateIsTheTenantsDate: issued_at is the instant the invoice
// was made (the app leaves it to its default, now()), and the document
// prints it as the tenant's calendar date then, in the tenant's time zone,
// as reminders judge days; the due date, a date the app stores as its
// midnight UTC, prints as that date whatever the zone. An invoice made at
// 08:30 on 1 April in Tokyo (23:30 UTC on 31 March) is dated 1 April, and
// one made at 19:00 on 31 March in Los Angeles (02:00 UTC on 1 April) 31
// March; a tenant in UTC gets the UTC date.
func TestPDFIssueDateIsTheTenantsDate(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	for _, tc := range []struct {
		slug, zone string
		issued     time.Time
		want       string
	}{
		{"tokyo", "Asia/Tokyo", time.Date(2026, 3, 31, 23, 30, 0, 0, time.UTC), "2026-04-01"},
		{"losangeles", "America/Los_Angeles", time.Date(2026, 4, 1, 2, 0, 0, 0, time.UTC), "2026-03-31"},
		{"utc", "", time.Date(2026, 4, 1, 2, 0, 0, 0, time.UTC), "2026-04-01"},
	} {
		tn := e.provision(t, tc.slug, tc.slug)
		if tc.zone != "" {
			var err error
			if tn, err = e.h.Tenancy.SetTimeZone(e.ctx, tn.ID, tc.zone, "test"); err != nil {
				t.Fatalf("SetTimeZone(%s): %v", tc.zone, err)
			}
		}
		inv := acmeInvoice
		inv.IssuedAt = tc.issued
		inv.DueAt = time.Date(2026, 4, 30, 0, 0, 0, 0, time.UTC)
		id := e.addInvoice(t, tn, acmeCustomer, inv)
		if err := e.work(tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: id}); err != nil {
			t.Fatalf("%s: InvoicePDF: %v", tc.slug, err)
		}
		row, ok := e.documentRow(t, tn, id)
		if !ok {
			t.Fatalf("%s: no document recorded", tc.slug)
		}
		text := pdfToText(t, e.readDocument(t, tn, row.StorageKey))
		if got := printedDate(text, "Issue date"); got != tc.want {
			t.Errorf("tenant in %s, invoice issued at %s: the PDF's issue date is %q, want %s (the tenant's date then)",
				tn.TimeZoneName(), tc.issued.Format(time.RFC3339), got, tc.want)
		}
		if got := printedDate(text, "Due date"); got != "2026-04-30" {
			t.Errorf("tenant in %s: the PDF's due date is %q, want 2026-04-30 (the stored date, in any zone)", tn.TimeZoneName(), got)
		}
	}
}

// printedDate returns the value printed after label in a document's text
// (pdftotext -layout), "" when there is none.
func printedDate(text, label string) string {
	m := regexp.MustCompile(regexp.QuoteMeta(label) + `\s+(\S+)`).FindStringSubmatch(text)
	if m == nil {
		return ""
	}
	return m[1]
}
