package tenancy_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/invoice"
)

// TestPruneDocumentsOfATenantMovedMeanwhile: a prune that read the
// tenant on "main" and waits for the writers' lock of invoice_documents
// behind a move's copy, which switches the tenant to "second" and drops
// the old schema, fails with ErrMovedDuringPrune ("run it again", as
// docs/operations.md says), not with the dropped table's error, and removes nothing.
func TestPruneDocumentsOfATenantMovedMeanwhile(t *testing.T) {
	t.Parallel()
	b := setupTwoServers(t)
	acme := b.provision(t, "prunemove", "main")
	const deleted = 99 // a PDF no row records
	if _, err := b.docs.Put(b.ctx, acme.ID, invoice.DocumentKey(deleted), strings.NewReader("%PDF-1.4 invoice")); err != nil {
		t.Fatal(err)
	}
	table := pgx.Identifier{acme.Schema, "invoice_documents"}.Sanitize()

	// Holds the move's copy back until the prune waits behind it.
	hold, err := b.pool.Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hold.Rollback(context.WithoutCancel(b.ctx)) }()
	if _, err := hold.Exec(b.ctx, "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	waiting := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; {
			var got int
			if err := b.pool.QueryRow(b.ctx, "SELECT count(*) FROM pg_catalog.pg_locks WHERE NOT granted AND relation = $1::regclass",
				table).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d waiting for %s, want %d", got, table, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	moved := make(chan error, 1)
	go func() {
		_, err := b.svc.Move(b.ctx, acme.ID, "second", "test", tenancy.MoveOptions{Grace: time.Millisecond})
		moved <- err
	}()
	waiting(1)
	type result struct {
		res tenancy.DocumentsPruned
		err error
	}
	pruned := make(chan result, 1)
	go func() {
		res, err := b.svc.PruneDocuments(b.ctx, acme.ID)
		pruned <- result{res, err}
	}()
	waiting(2)
	if err := hold.Commit(b.ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-moved; err != nil {
		t.Fatal(err)
	}
	r := <-pruned
	if !errors.Is(r.err, tenancy.ErrMovedDuringPrune) || r.res.Removed != 0 {
		t.Fatalf("PruneDocuments of a tenant moved meanwhile = %+v, %v; want ErrMovedDuringPrune", r.res, r.err)
	}
	f, _, err := b.docs.Open(b.ctx, acme.ID, invoice.DocumentKey(deleted))
	if err != nil {
		t.Fatalf("the document was removed: %v", err)
	}
	_ = f.Close()
}
