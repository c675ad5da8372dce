package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// forgetFails is an ErasedForgetter whose audit read or Redis call fails.
type forgetFails struct{ calls *atomic.Int32 }

func (f forgetFails) ForgetErased(context.Context, string, ...string) (bool, error) {
	f.calls.Add(1)
	return false, errors.New("redis: connection refused")
}

// TestRefusalOfErasedTenantIsRetriedWhenTheForgetFails: a task that a
// stale answer let run for an erased tenant and whose handler failed for
// good (a tenant:migrate refused because its schema went) is archived as
// its tenant's deletion's only once the tenant's fair-dispatch state is
// forgotten; when that fails (Redis or the audit read down), the task is
// retried, as one whose failure was not permanent is: archived, it was
// the last thing that would have forgotten the erased tenant's state.
func TestRefusalOfErasedTenantIsRetriedWhenTheForgetFails(t *testing.T) {
	t.Parallel()
	active := tenantctx.Tenant{ID: "tn_erased_refusal", Slug: "erased-refusal", Name: "Erased", Schema: "tenant_erased_refusal", Status: tenantctx.StatusActive}
	calls := new(atomic.Int32)
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: staleOnce{memstore.New(), active, new(atomic.Bool)}, Erased: forgetFails{calls}},
		map[string]asynq.Handler{
			tasks.TypeInvoicePDF: worker.Handle(func(context.Context, tasks.InvoicePDF) error {
				return worker.Permanentf("render invoice 1 of tenant %s: its schema does not exist", active.ID)
			}),
		})
	payload, err := json.Marshal(tasks.InvoicePDF{TenantID: active.ID, InvoiceID: 1})
	if err != nil {
		t.Fatal(err)
	}
	err = mux.ProcessTask(testContext(t), asynq.NewTask(tasks.TypeInvoicePDF, payload))
	if calls.Load() == 0 {
		t.Fatalf("task of an erased tenant = %v, and its state was not asked to be forgotten", err)
	}
	if err == nil || worker.IsPermanent(err) {
		t.Errorf("task of an erased tenant whose state could not be forgotten = %v, want an error that is retried", err)
	}
}
