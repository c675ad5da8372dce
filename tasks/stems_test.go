package tasks

import (
	"slices"
	"strings"
	"testing"
)

// TestTenantIDStemsNameEveryTenantTask: a drain (and a deletion's) finds a
// tenant's tasks in asynq's retry and scheduled sets by the stems of
// TenantIDStems, so the task id of every tenant task type, with and
// without a suffix, has one of the tenant's stems, no other tenant's id
// does (also one the tenant's id is a prefix of), and no system task's.
func TestTenantIDStemsNameEveryTenantTask(t *testing.T) {
	t.Parallel()
	const tenant = "tn_l6to436s7a7gm26zfzxqh6n75e"
	const other = "tn_l6to436s7a7gm26zfzxqh6n75ex"
	of := func(id string) []Payload {
		return []Payload{
			InvoicePDF{TenantID: id, InvoiceID: 42},
			InvoiceReminder{TenantID: id, InvoiceID: 7, Day: "2026-12-05"},
			InvoicesOverdue{TenantID: id, Tick: 1733356800},
			DocumentsPrune{TenantID: id, Tick: 1733356800},
			TenantMigrate{TenantID: id},
			TenantDestroy{TenantID: id},
		}
	}
	stems := TenantIDStems(tenant)
	named := func(id string) bool {
		return slices.ContainsFunc(stems, func(s string) bool { return id == s || strings.HasPrefix(id, s+":") })
	}
	covered := map[string]bool{}
	for _, p := range of(tenant) {
		covered[p.TypeName()] = true
		for _, id := range []string{p.Spec().TaskID, p.Spec().TaskID + ":again"} {
			if !named(id) {
				t.Errorf("%s: task id %q has none of the tenant's stems %v", p.TypeName(), id, stems)
			}
		}
	}
	for _, p := range Types() {
		if _, ok := p.(TenantPayload); ok && !covered[p.TypeName()] {
			t.Errorf("tenant task type %s is not in this test's list", p.TypeName())
		}
	}
	for _, p := range append(of(other), SweepOverdue{Tick: 1733356800}, SweepDocuments{Tick: 1733356800}) {
		if id := p.Spec().TaskID; named(id) {
			t.Errorf("%s: task id %q, not the tenant's, has one of its stems %v", p.TypeName(), id, stems)
		}
	}
}
