package tenancy_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// auditWatch is a catalog that closes reached the first time its caller
// reads or appends to the audit log.
type auditWatch struct {
	storage.Catalog
	once    sync.Once
	reached chan struct{}
}

func (a *auditWatch) AuditEntries(ctx context.Context, id string) ([]storage.AuditEntry, error) {
	defer a.once.Do(func() { close(a.reached) })
	return a.Catalog.AuditEntries(ctx, id)
}

func (a *auditWatch) AppendAuditOnce(ctx context.Context, e storage.AuditEntry) (bool, error) {
	defer a.once.Do(func() { close(a.reached) })
	return a.Catalog.AppendAuditOnce(ctx, e)
}

// TestRacingDeletionRequestsRecordTheRealFromStatus: two deletion
// requests of one tenant at once, from two services (a client that gave
// up and asked another replica again, say): the one that marked the tenant
// deleting is still completing when the other, which found it deleting
// already, comes to record the request. The one tenant.deletion_requested
// entry must say which status the tenant was deleted from (active), not
// "deleting", the status the second request found.
func TestRacingDeletionRequestsRecordTheRealFromStatus(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.active(t, "deletedtwice")
	watch := &auditWatch{Catalog: b.catalog, reached: make(chan struct{})}
	other := tenancy.New(tenancy.Config{Catalog: watch, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
	var wg sync.WaitGroup
	defer wg.Wait()
	racing := &racingStatus{Catalog: b.catalog, after: func(to tenantctx.Status) {
		// Marked deleting: the other request runs up to its audit entry
		// before this one goes on.
		wg.Go(func() {
			if _, err := other.RequestDeletion(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
				t.Errorf("racing deletion request: %v", err)
			}
		})
		select {
		case <-watch.reached:
		case <-time.After(10 * time.Second):
			t.Error("the racing deletion request did not come to its audit entry")
		}
	}}
	svc := tenancy.New(tenancy.Config{Catalog: racing, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
	if _, err := svc.RequestDeletion(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatalf("deletion request: %v", err)
	}
	wg.Wait()
	froms := b.deletionRequestedFrom(t, tn.ID)
	if len(froms) != 1 || froms[0] != string(tenantctx.StatusActive) {
		t.Fatalf("tenant.deletion_requested entries with from = %q; want one, from \"active\"", froms)
	}
}
