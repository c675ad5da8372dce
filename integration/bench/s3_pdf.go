package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/pdf"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// pdfLines is the number of line items of the rendered invoices.
const pdfLines = 10

// pdf is scenario 3: invoice:pdf end to end through the real cmd/worker
// binary (default concurrency) over the core tenants' 10-line invoices,
// enqueued through tasks.Enqueuer as the enqueue service does.
//
// Throughput: a burst of PDFBurst tasks enqueued at once, from the first
// enqueue to the last completion. Latency: enqueue to completion of tasks
// enqueued at an even pace of half that throughput for PDFPaced (at full
// speed latency is only queueing). A task's completion is the time on the
// worker's "task finished" log line (written after the handler returned;
// asynq's done call follows). Baseline: the same invoice rendered in
// process by pdf.Render on every CPU, the ceiling rendering alone allows.
func (b *bench) pdf(ctx context.Context, s *Scenario) error {
	c, err := b.openCore(ctx)
	if err != nil {
		return err
	}
	s.Sizes["tenants"] = len(c.tenants)
	s.Sizes["lines_per_invoice"] = pdfLines
	s.Sizes["burst_tasks"] = b.sz.PDFBurst
	s.Sizes["paced_seconds"] = b.sz.PDFPaced.Seconds()
	s.Sizes["worker_concurrency"] = config.DefaultWorkerConcurrency

	renderRate, err := renderBaseline(ctx, b.sz.RenderBaseline)
	if err != nil {
		return err
	}
	putP50, putP99, err := b.putBaseline(ctx)
	if err != nil {
		return err
	}
	// Enough invoices for warm-up, burst and a paced phase at up to the
	// render ceiling (the paced rate is half the burst rate).
	perTenant := (len(c.tenants)+b.sz.PDFBurst+int(renderRate*b.sz.PDFPaced.Seconds()))/len(c.tenants) + 1
	s.Sizes["invoices_seeded"] = perTenant * len(c.tenants)

	progress("pdf: seeding %d invoices of %d lines", perTenant*len(c.tenants), pdfLines)
	if err := seedInvoices(ctx, c.pool, c.tenants, invoiceSeed{count: perTenant, lines: pdfLines, status: "sent", dueDays: 10}); err != nil {
		return err
	}
	w, err := b.startWorker(ctx, c.url, "pdf")
	if err != nil {
		return err
	}
	defer w.stop()
	_, idleRSS, _ := w.memory()
	enq, done := b.newEnqueuer()
	defer done()

	// Invoices are handed out round-robin over tenants, never twice.
	var next atomic.Int64
	nextTask := func() (tasks.InvoicePDF, bool) {
		i := int(next.Add(1)) - 1
		t := c.tenants[i%len(c.tenants)]
		k := i / len(c.tenants)
		if k >= len(t.Invoices) {
			return tasks.InvoicePDF{}, false
		}
		return tasks.InvoicePDF{TenantID: t.ID, InvoiceID: t.Invoices[k]}, true
	}
	var enqMu sync.Mutex
	enqueuedAt := map[string]time.Time{}
	submit := func(ctx context.Context) error {
		p, ok := nextTask()
		if !ok {
			return fmt.Errorf("out of seeded invoices")
		}
		at := time.Now()
		res, err := enq.Enqueue(ctx, p)
		if err != nil {
			return err
		}
		if res.Existing {
			return fmt.Errorf("invoice %d of %s was already enqueued", p.InvoiceID, p.TenantID)
		}
		enqMu.Lock()
		enqueuedAt[res.Info.ID] = at
		enqMu.Unlock()
		return nil
	}
	waitDone := func(mark, n int, what string) ([]finish, error) {
		err := w.waitFor(ctx, 5*time.Minute+time.Duration(n)*20*time.Millisecond, 20*time.Millisecond, what, func() (bool, error) {
			got, failed := w.tracker.count(mark, tasks.TypeInvoicePDF)
			if failed > 0 {
				return false, fmt.Errorf("%s: %d invoice:pdf tasks failed\n%s", what, failed, w.logTail())
			}
			return got >= n, nil
		})
		return w.tracker.since(mark), err
	}
	latencies := func(events []finish) []time.Duration {
		enqMu.Lock()
		defer enqMu.Unlock()
		var lat []time.Duration
		for _, e := range events {
			if at, ok := enqueuedAt[e.TaskID]; ok && e.TaskType == tasks.TypeInvoicePDF {
				lat = append(lat, e.At.Sub(at))
			}
		}
		slices.Sort(lat)
		return lat
	}

	// Warm-up: one invoice per tenant (fills the worker's caches and pool).
	mark := w.tracker.mark()
	for range len(c.tenants) {
		if err := submit(ctx); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	if _, err := waitDone(mark, len(c.tenants), "pdf warm-up"); err != nil {
		return err
	}

	progress("pdf: burst of %d", b.sz.PDFBurst)
	mark = w.tracker.mark()
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	var claimed atomic.Int64
	for range 16 {
		g.Go(func() error {
			for claimed.Add(1) <= int64(b.sz.PDFBurst) {
				if err := submit(gctx); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("burst enqueue: %w", err)
	}
	enqueueTime := time.Since(start)
	burst, err := waitDone(mark, b.sz.PDFBurst, "pdf burst")
	if err != nil {
		return err
	}
	last, firstStart := burst[0].At, burst[0].At.Add(-burst[0].Duration)
	for _, e := range burst {
		if e.At.After(last) {
			last = e.At
		}
		if began := e.At.Add(-e.Duration); began.Before(firstStart) {
			firstStart = began
		}
	}
	burstN := len(burst)
	// From the first handler start: an idle worker first sleeps out its
	// TaskCheckInterval, which is latency, not throughput.
	throughput := float64(burstN) / last.Sub(firstStart).Seconds()
	burstLat := latencies(burst)

	rate := throughput / 2
	count := min(int(rate*b.sz.PDFPaced.Seconds()), perTenant*len(c.tenants)-int(next.Load()))
	progress("pdf: paced %d tasks at %.0f/s", count, rate)
	mark = w.tracker.mark()
	interval := time.Duration(float64(time.Second) / rate)
	pacedStart := time.Now()
	for i := range count {
		if d := time.Until(pacedStart.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := submit(ctx); err != nil {
			return fmt.Errorf("paced enqueue: %w", err)
		}
	}
	paced, err := waitDone(mark, count, "pdf paced")
	if err != nil {
		return err
	}
	lat := latencies(paced)
	var service []time.Duration
	for _, e := range paced {
		if e.TaskType == tasks.TypeInvoicePDF {
			service = append(service, e.Duration)
		}
	}
	slices.Sort(service)
	hwm, _, err := w.memory()
	if err != nil {
		return fmt.Errorf("worker memory: %w", err)
	}
	// The render ceiling again, after the load: on a shared machine one
	// short sample can be far off; the mean of both is the baseline.
	renderAfter, err := renderBaseline(ctx, b.sz.RenderBaseline)
	if err != nil {
		return err
	}
	renderSamples := []float64{renderRate, renderAfter}
	renderRate = (renderRate + renderAfter) / 2

	s.add("throughput (burst)", throughput, "tasks/s").
		against(fmt.Sprintf("pdf.Render in process on %d goroutines", renderParallelism()), renderRate, "renders/s", renderSamples)
	if b.bareDrain > 0 {
		s.add("throughput (burst) vs bare asynq", throughput, "tasks/s").against("bare asynq no-op drain (middleware scenario)", b.bareDrain, "tasks/s", nil)
	}
	s.add("latency p50 at half load", millis(percentile(lat, 50)), "ms")
	s.add("latency p99 at half load", millis(percentile(lat, 99)), "ms")
	s.add("handler time p50 at half load", millis(percentile(service, 50)), "ms")
	s.add("handler time p99 at half load", millis(percentile(service, 99)), "ms")
	s.add("latency p50 in burst (queueing)", millis(percentile(burstLat, 50)), "ms")
	s.add("latency p99 in burst (queueing)", millis(percentile(burstLat, 99)), "ms")
	s.add("document store Put p50 (fsync file + dir)", millis(putP50), "ms")
	s.add("document store Put p99 (fsync file + dir)", millis(putP99), "ms")
	s.add("worker peak RSS (VmHWM)", float64(hwm)/(1<<20), "MiB").against("worker RSS when ready", float64(idleRSS)/(1<<20), "MiB", nil)
	s.note("burst: %d tasks enqueued in %.3f s by 16 goroutines through tasks.Enqueuer while the worker ran; throughput counted from the first handler start (%.2f s after the first enqueue: the idle worker's poll wait) to the last finish; paced: %d tasks at %.0f/s", burstN, enqueueTime.Seconds(), firstStart.Sub(start).Seconds(), len(lat), rate)
	s.note("latency minus handler time is queue wait: with the queue empty, asynq's processor sleeps TaskCheckInterval (tasks.DefaultTaskCheckInterval = 1 s) before it looks again, so at low load a task waits up to 1 s (about 0.5 s on average) before it starts")
	s.note("RSS is the cmd/worker child process's, from /proc/<pid>/status")
	s.Bound = "CPU: rendering a 10-line PDF (fpdf, font embedding) dominates each task; the worker, PostgreSQL (2 pinned transactions: load invoice + lines, upsert document row), Redis and the file store share 2 CPUs, so the in-process render rate on all CPUs is the ceiling"
	return nil
}

// putBaseline stores the bench invoice's PDF 50 times with storage.FS,
// as the handler does (temp file, fsync, rename, directory fsync), one at
// a time in the scratch directory's file system, and returns p50 and p99.
func (b *bench) putBaseline(ctx context.Context) (p50, p99 time.Duration, err error) {
	var buf bytes.Buffer
	if _, err := pdf.Render(ctx, &buf, benchInvoice(pdfLines)); err != nil {
		return 0, 0, fmt.Errorf("put baseline: %w", err)
	}
	fs, err := storage.NewFS(filepath.Join(b.env.dir, "put-baseline"))
	if err != nil {
		return 0, 0, fmt.Errorf("put baseline: %w", err)
	}
	lat := make([]time.Duration, 0, 50)
	for i := range 50 {
		start := time.Now()
		if _, err := fs.Put(ctx, "tn_putbaseline", fmt.Sprintf("invoices/%d.pdf", i), bytes.NewReader(buf.Bytes())); err != nil {
			return 0, 0, fmt.Errorf("put baseline: %w", err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	return percentile(lat, 50), percentile(lat, 99), nil
}

// renderParallelism is how many goroutines the render baseline uses.
func renderParallelism() int { return max(1, int(numCPU())) }

// renderBaseline renders the bench invoice on every CPU for d and returns
// renders per second.
func renderBaseline(ctx context.Context, d time.Duration) (float64, error) {
	inv := benchInvoice(pdfLines)
	if _, err := pdf.Render(ctx, io.Discard, inv); err != nil { // warm fonts
		return 0, fmt.Errorf("render baseline: %w", err)
	}
	var n atomic.Int64
	deadline := time.Now().Add(d)
	start := time.Now()
	g, _ := errgroup.WithContext(ctx)
	for range renderParallelism() {
		g.Go(func() error {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if _, err := pdf.Render(ctx, io.Discard, inv); err != nil {
					return err
				}
				n.Add(1)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, fmt.Errorf("render baseline: %w", err)
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}
