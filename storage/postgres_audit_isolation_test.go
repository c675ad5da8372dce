package storage_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
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
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			b := setupPostgres(t)
			ctx := testContext(t)
			if _, err := b.pool.Exec(ctx, "DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation = %L', current_database(), '"+level+"'); END$$"); err != nil {
				t.Fatal(err)
			}
			b.pool.Reset() // new connections take the setting

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
				tx, err := b.pool.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = tx.Rollback(ctx) }()
				if err := storage.LockAuditIn(ctx, tx, e.TenantID, e.Action); err != nil {
					t.Fatal(err)
				}
				if _, err := tx.Exec(ctx, `INSERT INTO tenancy.audit_log (at, tenant_id, actor, action, detail)
					VALUES (clock_timestamp(), $1, $2, $3, $4::jsonb)`, e.TenantID, e.Actor, e.Action, string(e.Detail)); err != nil {
					t.Fatal(err)
				}
				type result struct {
					appended bool
					err      error
				}
				done := make(chan result, 1)
				go func() {
					appended, err := c.append(e)
					done <- result{appended, err}
				}()
				testenv.WaitFor(t, 30*time.Second, c.name+" to wait for the other append's lock", func() bool {
					n, err := testenv.LockWaiters(ctx, b.pool, "pg_advisory_xact_lock") // its own database's: the server is shared
					return err == nil && n > 0
				})
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				r := <-done
				if r.err != nil {
					t.Errorf("%s after waiting for another append of the entry: %v, want it to append nothing", c.name, r.err)
				} else if r.appended {
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
