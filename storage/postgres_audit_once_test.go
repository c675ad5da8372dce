package storage_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestAppendAuditOnceCallsReleasedTogetherAppendOnce: concurrent
// AppendAuditOnce calls of one tenant's action append one entry, also
// when each call's check for an entry comes before any other call's
// insert commits. The storagetest AuditOnce suite's calls seldom overlap
// that way (it passed with the calls' advisory lock removed); here a
// trigger holds every insert that got past its check until all calls are
// in, so without that lock every call appends.
func TestAppendAuditOnceCallsReleasedTogetherAppendOnce(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	url := testenv.Postgres(t)
	pool := newTestPool(t, url)
	if err := storage.MigrateCatalog(ctx, pool, nil); err != nil {
		t.Fatalf("MigrateCatalog: %v", err)
	}
	catalog := storage.NewPostgres(pool)
	locker := newTestPool(t, url)

	// The test's trigger: an insert that passed its NOT EXISTS check waits
	// for the test's advisory lock.
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION tenancy.hold_audit_insert() RETURNS trigger LANGUAGE plpgsql AS
		$$ BEGIN PERFORM pg_advisory_xact_lock_shared(4711); RETURN NEW; END $$;
		CREATE TRIGGER hold_audit_insert BEFORE INSERT ON tenancy.audit_log
		FOR EACH ROW EXECUTE FUNCTION tenancy.hold_audit_insert()`); err != nil {
		t.Fatal(err)
	}
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(4711)`); err != nil {
		t.Fatal(err)
	}
	tenant := tenantctx.NewID()
	calls := int(pool.Config().MaxConns)
	var appended atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := range calls {
		wg.Go(func() {
			ok, err := catalog.AppendAuditOnce(ctx, storage.AuditEntry{TenantID: tenant, Actor: "admin",
				Action: "tenant.deletion_requested", Detail: json.RawMessage(fmt.Sprintf(`{"call":%d}`, i))})
			if err != nil {
				errs <- err
			}
			if ok {
				appended.Add(1)
			}
		})
	}
	// Every call waits: in the trigger, or for another call (locks in
	// this test's database only: the server is shared with other tests).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= calls {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d calls wait for a lock", n, calls)
		}
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("AppendAuditOnce: %v", err)
	}
	got, err := catalog.AuditEntries(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || appended.Load() != 1 {
		t.Errorf("%d calls released together: %d entries, %d reported appending; want 1", calls, len(got), appended.Load())
	}
}
