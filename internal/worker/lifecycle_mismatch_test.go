package worker

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/schema"
)

// A tenant:migrate whose schema recorded other migrations than this
// release's fails the same way on every retry: it is archived at once,
// with its reason, as one blocked by the tenant's data is.
func TestTenantMigrateMismatchIsArchivedAtOnce(t *testing.T) {
	t.Parallel()
	mismatch := fmt.Errorf("migrate tenant tn_1: %w", fmt.Errorf("migrate tenant_acme: version 3 (x): %w: schema tenant_acme recorded version 2 as ...", schema.ErrMigrationMismatch))
	got := lifecycleError(mismatch)
	if !errors.Is(got, asynq.SkipRetry) || !errors.Is(got, schema.ErrMigrationMismatch) {
		t.Errorf("lifecycleError(%v) = %v; want it archived (asynq.SkipRetry) with its reason", mismatch, got)
	}
	// As one blocked by the tenant's data is.
	blocked := fmt.Errorf("migrate tenant tn_1: %w: %w", tenancy.ErrBlockedByData, schema.ErrRefusedByData)
	if got := lifecycleError(blocked); !errors.Is(got, asynq.SkipRetry) {
		t.Errorf("lifecycleError(%v) = %v; want it archived", blocked, got)
	}
}
