package tenancy_test

import (
	"context"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/tenancy"
)

// TestIssueKeyCutAtTheDeadlineAnswersByIt: an issuance whose INSERT waits
// for the catalog (here the tenant's row locked by another transaction)
// past the caller's deadline (an admin request's, ADMIN_REQUEST_TIMEOUT)
// must answer by that deadline, as every admin route does (README, "Admin
// deadline"), not once the catalog answers again: the withdrawal of the
// key it sent goes on without the caller. Once it ends, the key is never
// valid and is audited as aborted.
func TestIssueKeyCutAtTheDeadlineAnswersByIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.active(t, "keydeadline")

	// Another transaction holds the tenant's row for a while: the key's
	// INSERT (FOR SHARE of the row) waits for it, and so would anything
	// that waits for that INSERT.
	const held = 10 * time.Second
	tx, err := b.pool.Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(b.ctx))
	if _, err := tx.Exec(b.ctx, `SELECT 1 FROM tenancy.tenants WHERE id = $1 FOR UPDATE`, tn.ID); err != nil {
		t.Fatal(err)
	}
	released := time.AfterFunc(held, func() { _ = tx.Rollback(context.WithoutCancel(b.ctx)) })
	defer released.Stop()

	const deadline = time.Second
	ctx, cancel := context.WithTimeout(b.ctx, deadline)
	defer cancel()
	start := time.Now()
	key, _, err := b.svc.IssueKey(ctx, tn.ID, tenancy.ActorAdmin)
	took := time.Since(start)
	t.Logf("IssueKey cut at its deadline: after %v: %v", took.Round(100*time.Millisecond), err)
	if err == nil || key != "" {
		t.Fatalf("IssueKey while the tenant's row is locked past the deadline = %q, %v; want an error and no key", key, err)
	}
	if bound := deadline + 3*time.Second; took > bound {
		t.Errorf("IssueKey cut at its deadline (%v) answered after %v, want by the deadline (%v with slack): it waited for the catalog to answer again",
			deadline, took.Round(100*time.Millisecond), bound)
	}

	// Whatever went on without the caller ends once the row is free: no
	// valid key is left, and the one sent is withdrawn and audited.
	released.Stop()
	_ = tx.Rollback(context.WithoutCancel(b.ctx))
	wctx, wcancel := context.WithTimeout(b.ctx, time.Minute)
	defer wcancel()
	if err := b.svc.Wait(wctx); err != nil {
		t.Fatal(err)
	}
	keys, err := b.catalog.ListAPIKeys(b.ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	var withdrawn int
	for _, k := range keys {
		if k.RevokedAt == nil && k.CreatedAt.After(start) {
			t.Errorf("key %d (%s...) issued by the call cut at its deadline is valid", k.ID, k.Prefix)
		}
		if k.RevokedAt != nil && k.CreatedAt.After(start) {
			withdrawn++
		}
	}
	entries, err := b.catalog.AuditEntries(b.ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	var aborted int
	for _, e := range entries {
		if e.Action == string(tenancy.ActionKeyIssueAborted) {
			aborted++
		}
	}
	if withdrawn != 1 || aborted != 1 {
		t.Errorf("after the cut issuance: %d keys withdrawn, %d %s entries; want 1 and 1", withdrawn, aborted, tenancy.ActionKeyIssueAborted)
	}
}
