package schema

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestPinPlanScansOnlyTheOwnerCatalogs: the pin's statement (ownedPinSQL),
// planned as every unit runs it (a generic plan, prepared once per
// connection), reads pg_namespace and pg_description and nothing else:
// the existence lock is a function call in an expression, not a function
// scan under a subquery, which cost the server a tuplestore per unit
// (docs/performance.md, "2026-12-06, fifteenth: what a pinned unit costs
// PostgreSQL, statement by statement").
func TestPinPlanScansOnlyTheOwnerCatalogs(t *testing.T) {
	bn := setup(t, 1)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, bn.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "PREPARE pin (text, text, text) AS "+ownedPinSQL); err != nil {
		t.Fatal(err)
	}
	var plan []struct{ Plan planNode }
	if err := conn.QueryRow(ctx, `EXPLAIN (FORMAT JSON) EXECUTE pin('"tenant_acme"', 'tenant_acme', 'x')`).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	if len(plan) != 1 {
		t.Fatalf("plans: %d, want 1", len(plan))
	}
	var scans []string
	plan[0].Plan.walk(func(n planNode) {
		switch {
		case n.Relation != "":
			// A scan of a catalog: an index or a sequential scan, as the
			// catalog's size decides.
			scans = append(scans, "scan on "+n.Relation)
		case n.Function != "" || n.NodeType == "Function Scan":
			scans = append(scans, n.NodeType+" of "+n.Function)
		}
	})
	slices.Sort(scans)
	want := []string{"scan on pg_description", "scan on pg_namespace"}
	if !slices.Equal(scans, want) {
		t.Errorf("the pin's generic plan scans %q, want %q", scans, want)
	}
}

// planNode is a node of EXPLAIN (FORMAT JSON)'s plan, with what the test
// reads.
type planNode struct {
	NodeType string     `json:"Node Type"`
	Relation string     `json:"Relation Name"`
	Function string     `json:"Function Name"`
	Plans    []planNode `json:"Plans"`
}

// walk calls fn on n and every node under it.
func (n planNode) walk(fn func(planNode)) {
	fn(n)
	for _, c := range n.Plans {
		c.walk(fn)
	}
}
