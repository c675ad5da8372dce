package httpapi_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/tasks"
)

// TestDeletionPastTheQueueCapIs503: DELETE /admin/tenants/{id} marks the
// tenant deleting and then queues its tenant:destroy; when the critical
// queue's backlogs are at FAIR_MAX_WAITING_TOTAL that enqueue is refused,
// and the tenant stays deleting without a destroy until the request is
// made again. The answer says so, 503 with Retry-After, as every refusal
// by that cap is answered; it was a 500 "internal error", which told the
// operator neither that the tenant was marked nor that a retry completes
// the deletion. The retry, once there is room, queues the destroy.
func TestDeletionPastTheQueueCapIs503(t *testing.T) {
	t.Parallel()
	b := setupFairConfig(t, fair.Config{MinPending: 1, MaxWaitingTotal: 1})
	b.provisioned(t, "first") // its migration admitted to asynq
	gone := b.provisioned(t, "gone")
	// Its migration discarded: the tenant has nothing queued, and the
	// next tenant's migration fills the queue.
	if n, err := b.dispatcher.Drain(t.Context(), gone.ID, tasks.QueueCritical); err != nil || n.Total() != 1 {
		t.Fatalf("drain %s: %+v, %v", gone.Slug, n, err)
	}
	last := b.provisioned(t, "last") // its migration waits: the queue is full

	r := b.admin(t, http.MethodDelete, "/admin/tenants/"+gone.ID, "")
	wantStatus(t, r, http.StatusServiceUnavailable)
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	if msg := r.errorText(t); !strings.Contains(msg, "deleting") || !strings.Contains(msg, "FAIR_MAX_WAITING_TOTAL") || !strings.Contains(msg, "retry") {
		t.Fatalf("error %q: want it to say the tenant is marked deleting, name the cap and ask for a retry", msg)
	}
	if cur, err := b.pg.TenantByID(t.Context(), gone.ID); err != nil || cur.Status != "deleting" {
		t.Fatalf("tenant after the refused destroy: %+v, %v; want it marked deleting", cur, err)
	}

	// Room again: the retry queues the destroy.
	if n, err := b.dispatcher.Drain(t.Context(), last.ID, tasks.QueueCritical); err != nil || n.Total() != 1 {
		t.Fatalf("drain %s: %+v, %v", last.Slug, n, err)
	}
	r = b.admin(t, http.MethodDelete, "/admin/tenants/"+gone.ID, "")
	wantStatus(t, r, http.StatusAccepted)
	if n := b.queue(t, gone); n != 1 {
		t.Fatalf("%d tasks of the tenant queued after the retry, want its destroy", n)
	}
}
