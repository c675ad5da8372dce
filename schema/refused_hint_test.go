package schema

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestRefusedStepKeepsItsHint: version 4 refuses customers sharing an
// email address with a HINT that tells the operator what to do (merge
// them, then migrate again). The error reaches operators only as text
// (the task's error, `enqueue migrate --all --wait`, the worker's log),
// and pgconn's error text carries no hint, so Migrate must keep it.
func TestRefusedStepKeepsItsHint(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	ctx := context.Background()
	if _, err := Migrate(ctx, b.pool, "tenant_acme", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, `INSERT INTO tenant_acme.customers (name, email) VALUES ('a', 'x@example.org'), ('b', 'x@example.org')`); err != nil {
		t.Fatal(err)
	}
	_, err := Migrate(ctx, b.pool, "tenant_acme", 0)
	if !errors.Is(err, ErrRefusedByData) {
		t.Fatalf("migrate with shared addresses: %v; want ErrRefusedByData", err)
	}
	if !strings.Contains(err.Error(), "merge the customers that share an address") {
		t.Errorf("migrate with shared addresses: %q; want the step's hint (what to do) in the error", err)
	}
	if strings.Contains(err.Error(), "x@example.org") {
		t.Errorf("the error names an address: %q", err)
	}
}
