package fair_test

import (
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/tenantctx"
)

func TestParsePlans(t *testing.T) {
	t.Parallel()
	plans, err := fair.ParsePlans("pro=3:5:100, gold=8:0:0")
	if err != nil {
		t.Fatal(err)
	}
	if plans["pro"] != (fair.Policy{Weight: 3, MaxRunning: 5, MaxWaiting: 100}) || plans["gold"] != (fair.Policy{Weight: 8}) {
		t.Fatalf("parsed %v", plans)
	}
	if plans["free"] != fair.DefaultPlans()["free"] {
		t.Fatalf("free plan %v, want the default kept", plans["free"])
	}
	again, err := fair.ParsePlans(plans.String())
	if err != nil || again.String() != plans.String() {
		t.Fatalf("round trip %q -> %v, %v", plans.String(), again, err)
	}
	for _, bad := range []string{"pro", "pro=1:2", "pro=0:1:1", "pro=1:-1:1", "=1:1:1", "pro=a:1:1", "pro=1:1:99999999"} {
		if _, err := fair.ParsePlans(bad); err == nil {
			t.Errorf("ParsePlans(%q) accepted", bad)
		}
	}
}

func TestPolicyOf(t *testing.T) {
	t.Parallel()
	plans := fair.DefaultPlans()
	if got := plans.PolicyOf(tenantctx.Tenant{Plan: "enterprise"}); got != plans["enterprise"] {
		t.Fatalf("enterprise = %v", got)
	}
	if got := plans.PolicyOf(tenantctx.Tenant{Plan: "unheard-of"}); got != plans[fair.DefaultPlan] {
		t.Fatalf("unknown plan = %v, want the default plan's", got)
	}
	got := plans.PolicyOf(tenantctx.Tenant{Plan: "pro", Limits: tenantctx.Limits{MaxWaiting: 7, Weight: 9}})
	if got != (fair.Policy{Weight: 9, MaxRunning: plans["pro"].MaxRunning, MaxWaiting: 7}) {
		t.Fatalf("overridden pro = %v", got)
	}
}
