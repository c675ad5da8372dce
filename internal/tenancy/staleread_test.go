package tenancy_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// racingRead is a catalog that runs a hook once, right after a tenant is
// read by id: another service's whole request, landing between the status
// a call read and the change it then writes.
type racingRead struct {
	storage.Catalog
	mu    sync.Mutex
	after func()
}

func (r *racingRead) TenantByID(ctx context.Context, id string) (tenantctx.Tenant, error) {
	t, err := r.Catalog.TenantByID(ctx, id)
	r.mu.Lock()
	hook := r.after
	r.after = nil
	r.mu.Unlock()
	if hook != nil {
		hook()
	}
	return t, err
}

// statusTrail returns the tenant's status changes as the audit log tells
// them, oldest first: "from>to" for tenant.status_changed and
// "from>deleting" for tenant.deletion_requested.
func statusTrail(t *testing.T, b *bundle, id string) []string {
	t.Helper()
	var trail []string
	for _, e := range b.audit(t, id) {
		var d struct {
			From string `json:"from"`
			To   string `json:"to"`
		}
		switch tenancy.Action(e.Action) {
		case tenancy.ActionStatusChanged:
		case tenancy.ActionDeletionRequested:
			d.To = string(tenantctx.StatusDeleting)
		default:
			continue
		}
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			t.Fatal(err)
		}
		trail = append(trail, d.From+">"+d.To)
	}
	return trail
}

// TestStatusChangesRacingOnTwoServicesAgreeWithTheAudit: two enqueue
// services share one catalog. A call on the first reads the tenant's status,
// and the second service changes it before the first writes its own
// change. Whatever status wins, the audit log must tell how the tenant got
// there: each change written is recorded with the status it really came
// from, and the last one recorded is the tenant's status.
func TestStatusChangesRacingOnTwoServicesAgreeWithTheAudit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		start tenantctx.Status
		// first reads the status, second runs in between on the other
		// service.
		first, second func(*tenancy.Service, context.Context, string) error
	}{
		{"suspend a suspended tenant, resumed in between", tenantctx.StatusSuspended, suspend, resume},
		{"resume an active tenant, suspended in between", tenantctx.StatusActive, resume, suspend},
		{"delete an active tenant, suspended in between", tenantctx.StatusActive, deletion, suspend},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			rr := &racingRead{Catalog: b.catalog}
			first := tenancy.New(tenancy.Config{Catalog: rr, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
			tn := b.active(t, "stale")
			if tc.start == tenantctx.StatusSuspended {
				if err := suspend(b.svc, b.ctx, tn.ID); err != nil {
					t.Fatal(err)
				}
			}
			var secondErr error
			rr.after = func() { secondErr = tc.second(b.svc, b.ctx, tn.ID) }
			firstErr := tc.first(first, b.ctx, tn.ID)
			if secondErr != nil {
				t.Fatalf("call on the other service: %v", secondErr)
			}
			got, err := b.catalog.TenantByID(b.ctx, tn.ID)
			if err != nil {
				t.Fatal(err)
			}
			trail := statusTrail(t, b, tn.ID)
			t.Logf("first call: %v; status %s; audit trail %q", firstErr, got.Status, trail)
			last := ""
			if len(trail) > 0 {
				_, last, _ = strings.Cut(trail[len(trail)-1], ">")
			}
			if last != string(got.Status) {
				t.Errorf("tenant is %s, but the audit's last status change is %q", got.Status, trail)
			}
			for i := 1; i < len(trail); i++ {
				_, was, _ := strings.Cut(trail[i-1], ">")
				if from, _, _ := strings.Cut(trail[i], ">"); from != was {
					t.Errorf("audit trail %q: change %d says it came from %s, but the tenant was %s", trail, i, from, was)
				}
			}
		})
	}
}
