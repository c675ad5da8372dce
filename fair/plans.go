package fair

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/invoicing/tenantworker/tenantctx"
)

// Plans maps tenant plans to their policies. A plan it does not name gets
// the policy of DefaultPlan.
type Plans map[string]Policy

// DefaultPlan is the plan whose policy unknown plans get.
const DefaultPlan = "free"

// DefaultPlans are the policies without PLAN_LIMITS: weight, running cap
// and waiting cap per queue.
func DefaultPlans() Plans {
	return Plans{
		"free":       {Weight: 1, MaxRunning: 10, MaxWaiting: 10_000},
		"starter":    {Weight: 1, MaxRunning: 10, MaxWaiting: 20_000},
		"pro":        {Weight: 2, MaxRunning: 20, MaxWaiting: 50_000},
		"enterprise": {Weight: 4, MaxRunning: 50, MaxWaiting: 200_000},
	}
}

// PolicyOf returns t's policy: its plan's, with every non-zero field of
// t.Limits in its place.
func (p Plans) PolicyOf(t tenantctx.Tenant) Policy {
	pol, ok := p[t.Plan]
	if !ok {
		pol, ok = p[DefaultPlan]
	}
	if !ok {
		pol = Policy{Weight: 1}
	}
	if t.Limits.Weight > 0 {
		pol.Weight = t.Limits.Weight
	}
	if t.Limits.MaxRunning > 0 {
		pol.MaxRunning = t.Limits.MaxRunning
	}
	if t.Limits.MaxWaiting > 0 {
		pol.MaxWaiting = t.Limits.MaxWaiting
	}
	pol.Weight = max(pol.Weight, 1)
	return pol
}

// PolicyVersion returns the Policy.Version of t's policy: its catalog
// row's updated stamp (tenantctx.Tenant.UpdatedAt, which every change of
// the row moves forward) in Unix microseconds, 0 for a tenant without one.
// PolicyOf leaves Version 0: the callers that hand a policy to the
// dispatcher set it.
func PolicyVersion(t tenantctx.Tenant) int64 {
	if t.UpdatedAt.IsZero() {
		return 0
	}
	return max(t.UpdatedAt.UnixMicro(), 0)
}

// String returns p in ParsePlans's form, plans sorted by name.
func (p Plans) String() string {
	var b strings.Builder
	for i, name := range slices.Sorted(maps.Keys(p)) {
		if i > 0 {
			b.WriteByte(',')
		}
		pol := p[name]
		fmt.Fprintf(&b, "%s=%d:%d:%d", name, pol.Weight, pol.MaxRunning, pol.MaxWaiting)
	}
	return b.String()
}

// ParsePlans parses "plan=weight:max running:max waiting,..." (for
// example "free=1:10:10000,pro=2:20:50000"), each plan once; 0 as a cap
// means none. The plans it names replace DefaultPlans' entries of the
// same name; the others stay. An empty string means DefaultPlans.
func ParsePlans(s string) (Plans, error) {
	plans := DefaultPlans()
	if strings.TrimSpace(s) == "" {
		return plans, nil
	}
	named := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		name, spec, ok := strings.Cut(strings.TrimSpace(item), "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" || len(name) > 40 {
			return nil, fmt.Errorf("plan %.60q: want name=weight:max_running:max_waiting", item)
		}
		if named[name] {
			// The last would win without a word.
			return nil, fmt.Errorf("plan %s named twice", name)
		}
		named[name] = true
		parts := strings.Split(spec, ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("plan %s: want weight:max_running:max_waiting, got %.40q", name, spec)
		}
		var v [3]int
		for i, part := range parts {
			n, err := strconv.Atoi(strings.TrimSpace(part))
			if err != nil || n < 0 || n > tenantctx.MaxLimit || (i == 0 && n < 1) {
				return nil, fmt.Errorf("plan %s: %.20q is not a valid %s", name, part, [3]string{"weight (>= 1)", "max running", "max waiting"}[i])
			}
			v[i] = n
		}
		plans[name] = Policy{Weight: v[0], MaxRunning: v[1], MaxWaiting: v[2]}
	}
	return plans, nil
}
