package tasks

import "testing"

// TestParseID: the type and tenant of every registered payload's task id
// read back from the id alone, also with a suffix; ids of other forms are
// not taken for ours.
func TestParseID(t *testing.T) {
	t.Parallel()
	const tenant = "tn_l6to436s7a7gm26zfzxqh6n75e"
	for _, p := range []Payload{
		InvoicePDF{TenantID: tenant, InvoiceID: 42},
		InvoiceReminder{TenantID: tenant, InvoiceID: 7, Day: "2026-12-05"},
		InvoicesOverdue{TenantID: tenant, Tick: 1733356800},
		TenantMigrate{TenantID: tenant},
		TenantDestroy{TenantID: tenant},
		SweepOverdue{Tick: 1733356800},
	} {
		want := ""
		if tp, ok := p.(TenantPayload); ok {
			want = tp.Owner()
		}
		for _, id := range []string{p.Spec().TaskID, p.Spec().TaskID + ":again"} {
			typ, got, ok := ParseID(id)
			if !ok || typ != p.TypeName() || got != want {
				t.Errorf("ParseID(%q) = %q, %q, %v; want %q, %q", id, typ, got, ok, p.TypeName(), want)
			}
		}
	}
	for _, id := range []string{"", "asynq-random-id", "invoice:pdf", "invoice:pdf:", "invoice:pdf:../x:1", "invoice:pdfx:" + tenant} {
		if typ, tenantID, ok := ParseID(id); ok {
			t.Errorf("ParseID(%q) = %q, %q, true; want not ours", id, typ, tenantID)
		}
	}
}
