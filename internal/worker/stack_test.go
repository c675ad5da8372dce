package worker_test

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/tasks"
)

// TestTaskRunsOnAGrownStack checks that the chain's first middleware grows
// a task attempt's goroutine stack to 32 KiB before anything else runs:
// asynq starts each attempt on a new goroutine (8 KiB of stack), and a PDF
// attempt would otherwise double it twice deep in the handler, each copy
// rewriting every frame of the chain (docs/performance.md, "the worker's
// CPU per PDF task"). It counts the stack memory of goroutines parked in a
// handler behind DecodeEnvelope, with the collector off (it shrinks idle
// stacks).
func TestTaskRunsOnAGrownStack(t *testing.T) {
	const n, want = 64, 32 << 10
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.GC()

	entered := make(chan struct{})
	release := make(chan struct{})
	h := worker.DecodeEnvelope()(asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		entered <- struct{}{}
		<-release
		return nil
	}))
	task := asynq.NewTask(tasks.TypeInvoicePDF, []byte(`{"tenant_id":"acme","invoice_id":1}`))

	var before, during runtime.MemStats
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { _ = h.ProcessTask(context.Background(), task) })
	}
	for range n {
		<-entered
	}
	runtime.ReadMemStats(&during)
	close(release)
	wg.Wait()

	perTask := (during.StackInuse - before.StackInuse) / n
	if perTask < want {
		t.Fatalf("a task's goroutine holds %d bytes of stack in its handler, want at least %d (grown once by the chain)", perTask, want)
	}
	if perTask >= 2*want {
		t.Fatalf("a task's goroutine holds %d bytes of stack in its handler, want less than %d (grown one size too far)", perTask, 2*want)
	}
}
