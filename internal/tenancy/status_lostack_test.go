package tenancy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// statusAckLost commits SetStatusFrom in PostgreSQL and then reports the
// connection reset, as a client sees a COMMIT whose answer was lost (the
// server restarted, or its backend was terminated, after the commit).
// With restarting set, PostgreSQL is then unreachable for this catalog's
// reads (a restart in progress): the failed call cannot learn the outcome.
type statusAckLost struct {
	storage.Catalog
	restarting bool
	down       *atomic.Bool
}

func lostStatusAcks(c storage.Catalog, restarting bool) statusAckLost {
	return statusAckLost{Catalog: c, restarting: restarting, down: new(atomic.Bool)}
}

func (c statusAckLost) SetStatusFrom(ctx context.Context, id string, from, to tenantctx.Status) (tenantctx.Tenant, error) {
	if _, err := c.Catalog.SetStatusFrom(ctx, id, from, to); err != nil {
		return tenantctx.Tenant{}, err
	}
	c.down.Store(c.restarting)
	return tenantctx.Tenant{}, fmt.Errorf("set status of tenant %s to %s: %w", id, to, errConnReset)
}

func (c statusAckLost) TenantByID(ctx context.Context, id string) (tenantctx.Tenant, error) {
	if c.down.Load() {
		refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
		return tenantctx.Tenant{}, fmt.Errorf("tenant %s: %w", id, refused)
	}
	return c.Catalog.TenantByID(ctx, id)
}

// statusChanges returns the details of the tenant's tenant.status_changed
// entries, oldest first, without spaces.
func statusChanges(t *testing.T, b *bundle, id string) []string {
	t.Helper()
	var changes []string
	for _, e := range b.audit(t, id) {
		if e.Action == string(tenancy.ActionStatusChanged) {
			changes = append(changes, strings.ReplaceAll(string(e.Detail), " ", ""))
		}
	}
	return changes
}

// TestActivationWithLostCommitAckIsAuditedOnRetry: the activation at the
// end of a provisioning tenant's migration committed but its answer was
// lost; the migration fails (and is retried), and the retry, which finds
// the tenant active (or, read through a stale cache, provisioning still),
// must record the activation it never recorded: exactly one
// tenant.status_changed provisioning -> active.
func TestActivationWithLostCommitAckIsAuditedOnRetry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ stale, restarting bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		stale := tc.stale
		t.Run(fmt.Sprintf("stale=%v,restarting=%v", tc.stale, tc.restarting), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			p, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "lostactivation"}, "test")
			if err != nil {
				t.Fatal(err)
			}
			lost := tenancy.New(tenancy.Config{Catalog: lostStatusAcks(b.catalog, tc.restarting), Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
			if _, err := lost.Migrate(b.ctx, p.Tenant, 0, tenancy.ActorWorker); err == nil || errors.Is(err, tenancy.ErrRefused) {
				t.Fatalf("Migrate with the activation's answer lost = %v, want an error worth retrying", err)
			}
			tn, err := b.catalog.TenantByID(b.ctx, p.Tenant.ID)
			if err != nil || tn.Status != tenantctx.StatusActive {
				t.Fatalf("after Migrate: %+v, %v; want active (the activation committed)", tn, err)
			}
			retry := tn
			if stale {
				retry = p.Tenant
			}
			for run := range 2 { // the task's retry, and a later migration
				res, err := b.svc.Migrate(b.ctx, retry, 0, tenancy.ActorWorker)
				if err != nil {
					t.Fatalf("retried Migrate (run %d): %v", run+1, err)
				}
				// What the worker does on a retried run that found the
				// tenant active.
				if !res.Activated && retry.Status != tenantctx.StatusProvisioning {
					if err := b.svc.RecordActivation(b.ctx, retry.ID, tenancy.ActorWorker); err != nil {
						t.Fatalf("RecordActivation (run %d): %v", run+1, err)
					}
				}
			}
			want := `{"to":"active","from":"provisioning"}`
			if got := statusChanges(t, b, tn.ID); len(got) != 1 || got[0] != want {
				t.Errorf("tenant.status_changed entries %q, want exactly one %s", got, want)
			}
		})
	}
}

// TestStatusChangeWithLostCommitAckIsAuditedOnce: a Suspend (and a Resume)
// whose status change committed but whose answer was lost fails; the
// caller's retry finds the tenant in the new status already, and the
// change must be recorded all the same, once, whether the failed call or
// the retry records it.
func TestStatusChangeWithLostCommitAckIsAuditedOnce(t *testing.T) {
	t.Parallel()
	for _, restarting := range []bool{false, true} {
		t.Run(fmt.Sprintf("restarting=%v", restarting), func(t *testing.T) {
			t.Parallel()
			testStatusChangeWithLostCommitAck(t, restarting)
		})
	}
}

func testStatusChangeWithLostCommitAck(t *testing.T, restarting bool) {
	b := setup(t)
	tn := b.active(t, "loststatus")
	lostCatalog := lostStatusAcks(b.catalog, restarting)
	lost := tenancy.New(tenancy.Config{Catalog: lostCatalog, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
	steps := []struct {
		name   string
		change func(*tenancy.Service) (tenantctx.Tenant, error)
		want   tenantctx.Status
	}{
		{"suspend", func(s *tenancy.Service) (tenantctx.Tenant, error) { return s.Suspend(b.ctx, tn.ID, tenancy.ActorAdmin) }, tenantctx.StatusSuspended},
		{"resume", func(s *tenancy.Service) (tenantctx.Tenant, error) { return s.Resume(b.ctx, tn.ID, tenancy.ActorAdmin) }, tenantctx.StatusActive},
	}
	for _, st := range steps {
		lostCatalog.down.Store(false) // PostgreSQL is back
		if _, err := st.change(lost); err == nil {
			t.Fatalf("%s with the answer lost: no error", st.name)
		}
		if cur, err := b.catalog.TenantByID(b.ctx, tn.ID); err != nil || cur.Status != st.want {
			t.Fatalf("after the failed %s: %+v, %v; want %s (the change committed)", st.name, cur, err, st.want)
		}
		for range 2 { // the caller's retry, and one more
			if got, err := st.change(b.svc); err != nil || got.Status != st.want {
				t.Fatalf("retried %s = %+v, %v", st.name, got, err)
			}
		}
	}
	want := []string{
		`{"to":"active","from":"provisioning"}`,
		`{"to":"suspended","from":"active"}`,
		`{"to":"active","from":"suspended"}`,
	}
	if got := statusChanges(t, b, tn.ID); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("tenant.status_changed entries %q, want %q", got, want)
	}
}
