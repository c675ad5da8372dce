package storage_test

import (
	"encoding/json"
	"testing"

	"github.com/invoicing/tenantworker/storage"
)

// TestAppendAuditOnceOnARepeatableReadCatalogSeesAnEntryItWaitedFor: on a
// catalog database whose default_transaction_isolation is repeatable read
// or serializable, an AppendAuditOnce (and an AppendAuditUnlessLatest)
// that waited for the tenant's action's lock held by another append sees
// the entry that append committed, and appends nothing: its check, a
// statement after the wait, must see what the holder committed, which
// only read committed gives. Before, its snapshot was taken by the lock's
// statement, before the wait, so the entry was written twice (two
// "requested" entries for one deletion requested twice at once), or, at
// serializable against another append that checked too, the append was
// refused (SQLSTATE 40001).
func TestAppendAuditOnceOnARepeatableReadCatalogSeesAnEntryItWaitedFor(t *testing.T) {
	t.Parallel()
	for _, level := range catalogIsolations {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			b := catalogAt(t, level)
			ctx := testContext(t)

			for _, c := range []struct {
				name   string
				append func(e storage.AuditEntry) (bool, error)
			}{
				{"AppendAuditOnce", func(e storage.AuditEntry) (bool, error) {
					return b.catalog.AppendAuditOnce(ctx, e)
				}},
				{"AppendAuditUnlessLatest", func(e storage.AuditEntry) (bool, error) {
					return b.catalog.AppendAuditUnlessLatest(ctx, e, nil, json.RawMessage(`{"state":"on"}`))
				}},
			} {
				e := storage.AuditEntry{TenantID: "audited-" + c.name, Actor: "test", Action: "tenant.provisioned", Detail: json.RawMessage(`{"state":"on"}`)}
				// Another append of the action, holding its lock.
				tx := inFlight(t, ctx, b)
				if err := storage.LockAuditIn(ctx, tx, e.TenantID, e.Action); err != nil {
					t.Fatal(err)
				}
				if _, err := tx.Exec(ctx, `INSERT INTO tenancy.audit_log (at, tenant_id, actor, action, detail)
					VALUES (clock_timestamp(), $1, $2, $3, $4::jsonb)`, e.TenantID, e.Actor, e.Action, string(e.Detail)); err != nil {
					t.Fatal(err)
				}
				var appended bool
				err := commitAfterItWaits(t, ctx, b, tx, c.name+" to wait for the other append's lock", "pg_advisory_xact_lock", func() error {
					var err error
					appended, err = c.append(e)
					return err
				})
				if err != nil {
					t.Errorf("%s after waiting for another append of the entry: %v, want it to append nothing", c.name, err)
				} else if appended {
					t.Errorf("%s after waiting for another append of the entry appended it again", c.name)
				}
				entries, err := b.catalog.AuditEntries(ctx, e.TenantID)
				if err != nil {
					t.Fatal(err)
				}
				if len(entries) != 1 {
					t.Errorf("%s: the tenant's log holds %d entries, want 1", c.name, len(entries))
				}
			}
		})
	}
}
