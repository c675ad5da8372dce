package tasks

import (
	"context"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestNewServeMux: every task type is registered behind the middleware
// chain (an unknown tenant's task is archived before its handler), a type
// that only shares a registered prefix is refused, and a mux without a
// catalog is a start-up panic.
func TestNewServeMux(t *testing.T) {
	t.Parallel()
	catalog := storage.NewMemory()
	tn := addTenant(t, catalog, "mux-co", tenantctx.StatusActive)
	mux := NewServeMux(&Handlers{Catalog: catalog}, MuxOptions{Logger: discardLogger()})
	for _, typ := range []string{TypeInvoicePDF, TypeInvoiceReminder, TypeInvoicesOverdue, TypeSweepOverdue, TypeTenantMigrate, TypeTenantDestroy} {
		if _, pattern := mux.Handler(asynq.NewTask(typ, nil)); pattern != typ {
			t.Errorf("%s is not registered (pattern %q)", typ, pattern)
		}
		if typ == TypeSweepOverdue {
			continue
		}
		err := mux.ProcessTask(context.Background(), asynq.NewTask(typ, []byte(`{"tenant_id":"tn_nobody","invoice_id":1,"day":"2026-03-01"}`)))
		if !IsPermanent(err) || !strings.Contains(err.Error(), "tenant tn_nobody not found") {
			t.Errorf("%s for an unknown tenant: %v, want it archived by the tenant middleware", typ, err)
		}
	}
	err := mux.ProcessTask(context.Background(), asynq.NewTask(TypeInvoicePDF+"x", []byte(`{"tenant_id":"`+tn.ID+`","invoice_id":1}`)))
	if !IsPermanent(err) || !strings.Contains(err.Error(), "got a task of type") {
		t.Errorf("prefix type: %v, want refused", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("NewServeMux without a catalog did not panic")
			}
		}()
		NewServeMux(&Handlers{}, MuxOptions{})
	}()
}
