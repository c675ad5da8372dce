package tenantctx_test

import (
	"testing"

	"github.com/invoicing/tenantworker/tenantctx"
)

// TestDecide is the status policy's table, restated: any change to who may
// do what shows up here.
func TestDecide(t *testing.T) {
	t.Parallel()
	const (
		run    = tenantctx.Run
		wait   = tenantctx.Wait
		refuse = tenantctx.Refuse
	)
	want := map[tenantctx.Status][3]tenantctx.Verdict{
		//                            work    migration destruction
		tenantctx.StatusProvisioning: {wait, run, wait},
		tenantctx.StatusActive:       {run, run, wait},
		tenantctx.StatusSuspended:    {wait, run, wait},
		tenantctx.StatusDeleting:     {refuse, refuse, run},
	}
	activities := []tenantctx.Activity{tenantctx.Work, tenantctx.Migration, tenantctx.Destruction}
	for _, s := range tenantctx.Statuses {
		for i, a := range activities {
			if got := s.Decide(a); got != want[s][i] {
				t.Errorf("%s.Decide(%s) = %s, want %s", s, a, got, want[s][i])
			}
		}
	}
	// Fail closed: unknown statuses and activities are refused.
	for _, s := range []tenantctx.Status{"", "deleted", "ACTIVE"} {
		for _, a := range activities {
			if got := s.Decide(a); got != refuse {
				t.Errorf("%q.Decide(%s) = %s, want refuse", s, a, got)
			}
		}
	}
	for _, a := range []tenantctx.Activity{-1, 3, 100} {
		if got := tenantctx.StatusActive.Decide(a); got != refuse {
			t.Errorf("active.Decide(%d) = %s, want refuse", a, got)
		}
	}
	var zero tenantctx.Verdict
	if zero != refuse {
		t.Errorf("the zero Verdict is %s, want refuse", zero)
	}
}
