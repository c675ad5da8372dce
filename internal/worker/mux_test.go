package worker_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestEveryRegisteredTypeHasAHandler: the mux registers a handler for every
// type of the one registration list (tasks.Types) and for nothing else, in
// the same order. A new task type without a handler, or a handler without a
// registered type, fails here.
func TestEveryRegisteredTypeHasAHandler(t *testing.T) {
	t.Parallel()
	var registered []string
	for _, p := range tasks.Types() {
		registered = append(registered, p.TypeName())
	}
	if got := worker.RouteTypes(&worker.Handlers{}); !slices.Equal(got, registered) {
		t.Fatalf("handlers for %v, registered types %v", got, registered)
	}
}

// TestNewServeMux: every task type is registered behind the middleware
// chain (an unknown tenant's task is archived before its handler), a type
// that only shares a registered prefix is refused, and a mux without a
// catalog is a start-up panic.
func TestNewServeMux(t *testing.T) {
	t.Parallel()
	catalog := memstore.New()
	tn := addTenant(t, catalog, "mux-co", tenantctx.StatusActive)
	// The lifecycle service answers a tenant:destroy whose tenant is gone:
	// with no erasure of it recorded, the task is archived as unknown.
	enq, _ := newTestEnqueuer(t, newRedis(t))
	h := &worker.Handlers{Catalog: catalog, Tenancy: tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: enq})}
	mux := worker.NewServeMux(h, worker.MuxOptions{Logger: discardLogger()})
	for _, p := range tasks.Types() {
		typ := p.TypeName()
		if _, pattern := mux.Handler(asynq.NewTask(typ, nil)); pattern != typ {
			t.Errorf("%s is not registered (pattern %q)", typ, pattern)
		}
		if tasks.IsSystemType(typ) {
			continue
		}
		err := mux.ProcessTask(context.Background(), asynq.NewTask(typ, []byte(`{"tenant_id":"tn_nobody","invoice_id":1,"day":"2026-03-01"}`)))
		if !worker.IsPermanent(err) || !strings.Contains(err.Error(), "tenant tn_nobody not found") {
			t.Errorf("%s for an unknown tenant: %v, want it archived by ResolveTenant", typ, err)
		}
	}
	err := mux.ProcessTask(context.Background(), asynq.NewTask(tasks.TypeInvoicePDF+"x", []byte(`{"tenant_id":"`+tn.ID+`","invoice_id":1}`)))
	if !worker.IsPermanent(err) || !strings.Contains(err.Error(), "unknown task type") {
		t.Errorf("prefix type: %v, want refused", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("NewServeMux without a catalog did not panic")
			}
		}()
		worker.NewServeMux(&worker.Handlers{}, worker.MuxOptions{})
	}()
}

// TestUnknownTypeArchived: a task type no handler knows is archived at once
// with a reason (not retried 25 times as asynq's "handler not found"), also
// for a valid, active tenant, and before any tenant lookup.
func TestUnknownTypeArchived(t *testing.T) {
	t.Parallel()
	catalog := memstore.New()
	tn := addTenant(t, catalog, "unknown-co", tenantctx.StatusActive)
	mux := worker.NewServeMux(&worker.Handlers{Catalog: catalog}, worker.MuxOptions{Logger: discardLogger()})
	before := catalog.Queries()
	for _, typ := range []string{"invoice:burn", "tenant:migrate:v2", "x", "sweep:overduex"} {
		err := mux.ProcessTask(context.Background(), asynq.NewTask(typ, []byte(`{"tenant_id":"`+tn.ID+`"}`)))
		if !worker.IsPermanent(err) || !strings.Contains(err.Error(), "unknown task type") {
			t.Errorf("type %q: %v, want archived as an unknown task type", typ, err)
		}
	}
	if got := catalog.Queries() - before; got != 0 {
		t.Errorf("unknown types cost %d catalog queries, want 0", got)
	}
}
