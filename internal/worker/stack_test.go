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
// stacks). Stacks come in powers of two, so the bounds sit halfway between
// sizes: the memory other goroutines of the process free or take while it
// counts moves the average by a few hundred bytes, never by a size.
func TestTaskRunsOnAGrownStack(t *testing.T) {
	const n, want = 64, 32 << 10
	const low, high = want - want/4, 2*want - want/2 // between 16 and 32 KiB; between 32 and 64 KiB
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
	if perTask < low {
		t.Fatalf("a task's goroutine holds %d bytes of stack in its handler, want about %d (grown once by the chain), at least %d", perTask, want, low)
	}
	if perTask >= high {
		t.Fatalf("a task's goroutine holds %d bytes of stack in its handler, want about %d, less than %d (grown one size too far)", perTask, want, high)
	}
}
