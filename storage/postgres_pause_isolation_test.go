package storage_test

import (
	"context"
	"slices"
	"testing"

	"github.com/invoicing/tenantworker/tenantctx"
)

// TestQueuePauseRecordOnARepeatableReadCatalogFollowsTheLastRead: on a
// catalog database whose default_transaction_isolation is repeatable read
// or serializable, writes of a tenant's pause record that take turns on
// the tenant's row are saved in the order they read: a resume's clear
// that waited for a pause's record removes it. Each runs at read
// committed, which its protocol (lock the row, read, then write) is made
// for. Before, its snapshot was taken by the row's lock, before the wait,
// so the clear did not see the record the pause committed meanwhile and
// deleted nothing: the catalog said paused while the queues ran, and a
// Redis that lost its data had the queues paused again from it; and a
// record that waited for another record was refused (SQLSTATE 40001).
func TestQueuePauseRecordOnARepeatableReadCatalogFollowsTheLastRead(t *testing.T) {
	t.Parallel()
	for _, level := range catalogIsolations {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			b := catalogAt(t, level)
			ctx := testContext(t)
			tn := mustCreateTenant(t, ctx, b.catalog, "paused", tenantctx.StatusProvisioning)

			for _, c := range []struct {
				name        string
				first, then bool
			}{
				{"a clear after a record", true, false},
				{"a record after a record", true, true},
				{"a record after a clear", false, true},
			} {
				if err := b.catalog.SetQueuePaused(ctx, tn.ID, !c.first); err != nil {
					t.Fatal(err)
				}
				// The first write changes the record, holding the
				// tenant's row while it reads.
				reading, release := make(chan struct{}), make(chan struct{})
				firstDone := make(chan error, 1)
				go func() {
					_, err := b.catalog.SyncQueuePaused(ctx, tn.ID, func(context.Context) (bool, error) {
						close(reading)
						<-release
						return c.first, nil
					})
					firstDone <- err
				}()
				<-reading
				thenDone := make(chan error, 1)
				go func() { thenDone <- b.catalog.SetQueuePaused(ctx, tn.ID, c.then) }()
				waitForLockWaiter(t, ctx, b, "the second write to wait for the first's lock", "FOR NO KEY UPDATE")
				close(release)
				if err := <-firstDone; err != nil {
					t.Fatalf("%s: the first write: %v", c.name, err)
				}
				if err := <-thenDone; err != nil {
					t.Errorf("%s: the write that waited: %v, want it saved", c.name, err)
				}
				paused, err := b.catalog.PausedTenants(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if got := slices.Contains(paused, tn.ID); got != c.then {
					t.Errorf("%s: the catalog records the tenant paused %v, want %v (the last write's)", c.name, got, c.then)
				}
			}
		})
	}
}
