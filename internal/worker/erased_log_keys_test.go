package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
)

// forgetsAll is an ErasedForgetter that finds every tenant's erasure
// recorded and forgets it.
type forgetsAll struct{}

func (forgetsAll) ForgetErased(context.Context, string, ...string) (bool, error) { return true, nil }

// TestErasedTenantForgottenLineNamesEachKeyOnce: the line that says a task
// of an erased tenant had its fair-dispatch state forgotten is logged
// through the task's logger, which carries task_id, task_type and
// tenant_id already; naming them again wrote each twice with
// LOG_FORMAT=json, a line that log pipelines rejecting duplicate keys
// drop.
func TestErasedTenantForgottenLineNamesEachKeyOnce(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	mux := worker.MuxOf(worker.MuxOptions{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Catalog: memstore.New(), Erased: forgetsAll{}},
		map[string]asynq.Handler{
			tasks.TypeInvoicePDF: worker.Handle(func(context.Context, tasks.InvoicePDF) error { return nil }),
		})
	payload, err := json.Marshal(tasks.InvoicePDF{TenantID: "tn_erased", InvoiceID: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := mux.ProcessTask(testContext(t), asynq.NewTask(tasks.TypeInvoicePDF, payload)); !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("task of an erased tenant = %v, want it archived", err)
	}
	found := false
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(l, "fair-dispatch state forgotten") {
			found = true
		}
		if dup := duplicateKeys(t, l); len(dup) > 0 {
			t.Errorf("log line names %v twice:\n%s", dup, l)
		}
	}
	if !found {
		t.Fatalf("no line says the erased tenant's state was forgotten:\n%s", logs.String())
	}
}
