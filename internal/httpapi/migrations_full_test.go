package httpapi_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/tasks"
)

// TestMigrationsPastTheQueueCapAre503: POST /admin/migrations whose walk
// reaches a tenant whose tenant:migrate the critical queue refuses (its
// backlogs at FAIR_MAX_WAITING_TOTAL) answers 503 with Retry-After, saying
// how many tenants' migrations were enqueued and refused and that a retry
// enqueues the rest, as renders and provisioning past that cap are
// answered; it was a 500 "internal error" that said neither.
func TestMigrationsPastTheQueueCapAre503(t *testing.T) {
	t.Parallel()
	b := setupFairConfig(t, fair.Config{MinPending: 1, MaxWaitingTotal: 1})
	b.provisioned(t, "first")            // its migration admitted to asynq
	second := b.provisioned(t, "second") // its migration waits: the queue is full
	// The second tenant's migration discarded, a third's waits in its place:
	// the queue is full again, and the second has no migration queued.
	if n, err := b.dispatcher.Drain(t.Context(), second.ID, tasks.QueueCritical); err != nil || n.Total() != 1 {
		t.Fatalf("drain second: %+v, %v", n, err)
	}
	b.provisioned(t, "third")

	r := b.admin(t, http.MethodPost, "/admin/migrations", "")
	wantStatus(t, r, http.StatusServiceUnavailable)
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	// The walk goes on past the refusal: the first and third tenants
	// have theirs (found queued already), the second's was refused.
	msg := r.errorText(t)
	if want := "the migrations of 2 tenants were enqueued, 1 refused"; !strings.Contains(msg, want) ||
		!strings.Contains(msg, "FAIR_MAX_WAITING_TOTAL") || !strings.Contains(msg, "retry") {
		t.Fatalf("error %q: want it to say %q, name the cap and that a retry enqueues the rest", msg, want)
	}
}
