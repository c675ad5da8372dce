package storage_test

import (
	"testing"
	"time"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestRecordAPIKeyUseOnARepeatableReadCatalogWaitsForAnotherWrite: on a
// catalog database whose default_transaction_isolation is repeatable read
// or serializable, a flush of the keys' last use (RecordAPIKeyUse) that
// waited for another write of a key's row (a revocation, another
// replica's flush) writes the use: it runs at read committed, where
// PostgreSQL checks the row that write committed again. Before, that row
// was newer than the flush's snapshot and the whole flush was refused
// (SQLSTATE 40001): the last use of every key in it was lost.
func TestRecordAPIKeyUseOnARepeatableReadCatalogWaitsForAnotherWrite(t *testing.T) {
	t.Parallel()
	for _, level := range catalogIsolations {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			b := catalogAt(t, level)
			ctx := testContext(t)
			owner := mustCreateTenant(t, ctx, b.catalog, "flushed", tenantctx.StatusActive)
			k, key, err := b.catalog.IssueAPIKey(ctx, owner.ID)
			if err != nil {
				t.Fatal(err)
			}
			// Another replica's flush of an earlier use, not yet committed.
			earlier := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			tx := inFlight(t, ctx, b)
			if _, err := tx.Exec(ctx, `UPDATE tenancy.api_keys SET last_used_at = $2 WHERE id = $1`, k.ID, earlier); err != nil {
				t.Fatal(err)
			}
			later := earlier.Add(time.Minute)
			err = commitAfterItWaits(t, ctx, b, tx, "the flush to wait for the other write", "last_used_at", func() error {
				return b.catalog.RecordAPIKeyUse(ctx, map[string]time.Time{storage.HashAPIKey(key): later})
			})
			if err != nil {
				t.Errorf("RecordAPIKeyUse after waiting for another write of the key: %v, want the use recorded", err)
			}
			var got time.Time
			if err := b.pool.QueryRow(ctx, `SELECT last_used_at FROM tenancy.api_keys WHERE id = $1`, k.ID).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if !got.Equal(later) {
				t.Errorf("last use after the flush = %s, want %s", got, later)
			}
		})
	}
}
