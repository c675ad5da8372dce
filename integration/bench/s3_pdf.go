package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/pdf"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"

	"github.com/invoicing/tenantworker/internal/procstat"
)

// pdfLines is the number of line items of the rendered invoices.
const pdfLines = 10

// pdfKind is one kind of invoice the pdf scenario renders, by the font
// path its text takes.
type pdfKind struct {
	text     seedText
	fontPath pdf.FontPath
	target   float64 // PDFs/s end to end the issue asks for
}

// pdfKinds: single-byte code page text (cp1250 here; cp1252 costs the
// same) and text in several scripts (the utf8 path).
var pdfKinds = []pdfKind{
	{text: singleByte, fontPath: pdf.FontPathCP1250, target: 1300},
	{text: anyScript, fontPath: pdf.FontPathUTF8, target: 500},
}

// pdf is scenario 3: invoice:pdf end to end through the real cmd/worker
// binary (default concurrency) over the core tenants' 10-line invoices,
// enqueued through tasks.Enqueuer as the enqueue service does.
//
// Throughput: for each kind of invoice (pdfKinds) a burst of PDFBurst
// tasks enqueued at once, from the first handler start to the last
// completion; then the single-byte burst's invoices once more, unchanged
// (the worker keeps their stored documents). Latency: enqueue to
// completion of single-byte tasks enqueued at an even pace of half the
// burst's throughput for PDFPaced (at full speed latency is only
// queueing). A task's completion is the time on the worker's "task
// finished" log line (written after the handler returned; asynq's done
// call follows). Baselines: each kind rendered in process by pdf.Render on
// every CPU (the ceiling rendering alone allows), and bare asynq's no-op
// drain when the middleware scenario ran.
func (b *bench) pdf(ctx context.Context, s *Scenario) error {
	c, err := b.openCore(ctx)
	if err != nil {
		return err
	}
	s.Sizes["tenants"] = len(c.tenants)
	s.Sizes["lines_per_invoice"] = pdfLines
	s.Sizes["burst_tasks"] = b.sz.PDFBurst
	s.Sizes["paced_seconds"] = b.sz.PDFPaced.Seconds()
	s.Sizes["worker_concurrency"] = cmp.Or(b.pdfConcurrency, config.DefaultWorkerConcurrency)
	if b.pdfQueueClasses != "" {
		s.note("the worker serves the queue classes %s only (-worker-queue-classes)", b.pdfQueueClasses)
	}

	type kindRun struct {
		pdfKind
		render      []float64 // renders/s, before and after the load
		cpu         float64   // CPU seconds per render, one goroutine, one P
		cpuAllPs    float64   // the same with every P (the GC's idle-time workers included)
		allocBytes  float64   // per render
		allocs      float64   // per render
		invoices    [][]int64 // per tenant
		next        atomic.Int64
		throughput  float64
		burstLat    []time.Duration
		enqueueTime time.Duration
		wait        time.Duration // first enqueue to first handler start
		burstCPU    burstCPU      // CPU per task of the burst, by process
	}
	runs := make([]*kindRun, len(pdfKinds))
	for i, k := range pdfKinds {
		r := &kindRun{pdfKind: k}
		runs[i] = r
		rate, path, err := renderBaseline(ctx, k.text, b.sz.RenderBaseline)
		if err != nil {
			return err
		}
		if path != k.fontPath {
			return fmt.Errorf("the %s bench invoice takes font path %s, want %s", k.text.kind, path, k.fontPath)
		}
		r.render = append(r.render, rate)
		if r.cpu, r.allocBytes, r.allocs, err = renderCost(ctx, k.text, 1); err != nil {
			return err
		}
		if r.cpuAllPs, _, _, err = renderCost(ctx, k.text, 0); err != nil {
			return err
		}
	}
	putP50, putP99, err := b.putBaseline(ctx)
	if err != nil {
		return err
	}
	s.Sizes["put_samples"] = putSamples
	// Enough invoices of each kind for warm-up and burst, and for the
	// first kind a paced phase at up to the render ceiling (the paced rate
	// is half the burst rate).
	for i, r := range runs {
		n := len(c.tenants) + b.sz.PDFBurst
		if i == 0 {
			n += int(r.render[0] * b.sz.PDFPaced.Seconds())
		}
		perTenant := n/len(c.tenants) + 1
		s.Sizes["invoices_seeded_"+r.text.kind] = perTenant * len(c.tenants)
		progress("pdf: seeding %d %s invoices of %d lines", perTenant*len(c.tenants), r.text.kind, pdfLines)
		r.invoices, err = seedInvoices(ctx, c.pool, c.tenants, invoiceSeed{count: perTenant, lines: pdfLines, status: "sent", dueDays: 10, text: r.text})
		if err != nil {
			return err
		}
	}
	w, err := b.startWorkerWith(ctx, c.url, "pdf", b.pdfConcurrency, b.pdfQueueClasses)
	if err != nil {
		return err
	}
	defer w.stop()
	probe, err := b.newCPUProbe(ctx, c)
	if err != nil {
		return fmt.Errorf("cpu probe: %w", err)
	}
	_, idleRSS, _ := w.memory()
	enq, done := b.workerEnqueuer(c.pg)
	defer done()

	// Invoices of a kind are handed out round-robin over tenants, never
	// twice.
	nextTask := func(r *kindRun) (tasks.InvoicePDF, bool) {
		i := int(r.next.Add(1)) - 1
		t := i % len(c.tenants)
		k := i / len(c.tenants)
		if k >= len(r.invoices[t]) {
			return tasks.InvoicePDF{}, false
		}
		return tasks.InvoicePDF{TenantID: c.tenants[t].ID, InvoiceID: r.invoices[t][k]}, true
	}
	var enqMu sync.Mutex
	enqueuedAt := map[string]time.Time{}
	submitPayload := func(ctx context.Context, p tasks.InvoicePDF) error {
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
	submit := func(ctx context.Context, r *kindRun) (tasks.InvoicePDF, error) {
		p, ok := nextTask(r)
		if !ok {
			return p, fmt.Errorf("out of seeded %s invoices", r.text.kind)
		}
		return p, submitPayload(ctx, p)
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
	// burst enqueues the payloads next gives (from 16 goroutines) and
	// returns the throughput from the first handler start to the last
	// finish, the latencies, the enqueue time, the wait before the
	// first handler started and the CPU each process spent per task from
	// the first enqueue to the last completion.
	burst := func(what string, n int, next func(ctx context.Context) error) (float64, []time.Duration, time.Duration, time.Duration, burstCPU, error) {
		progress("pdf: %s burst of %d", what, n)
		mark := w.tracker.mark()
		cpu0, err := sampleBurstCPU(probe, w)
		if err != nil {
			return 0, nil, 0, 0, burstCPU{}, err
		}
		start := time.Now()
		g, gctx := errgroup.WithContext(ctx)
		var claimed atomic.Int64
		for range 16 {
			g.Go(func() error {
				for claimed.Add(1) <= int64(n) {
					if err := next(gctx); err != nil {
						return err
					}
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return 0, nil, 0, 0, burstCPU{}, fmt.Errorf("%s burst enqueue: %w", what, err)
		}
		enqueueTime := time.Since(start)
		events, err := waitDone(mark, n, "pdf "+what+" burst")
		if err != nil {
			return 0, nil, 0, 0, burstCPU{}, err
		}
		cpu1, err := sampleBurstCPU(probe, w)
		if err != nil {
			return 0, nil, 0, 0, burstCPU{}, err
		}
		last, firstStart := events[0].At, events[0].At.Add(-events[0].Duration)
		for _, e := range events {
			if e.At.After(last) {
				last = e.At
			}
			if began := e.At.Add(-e.Duration); began.Before(firstStart) {
				firstStart = began
			}
		}
		// From the first handler start: an idle worker first sleeps out
		// its TaskCheckInterval, which is latency, not throughput.
		return float64(len(events)) / last.Sub(firstStart).Seconds(), latencies(events), enqueueTime, firstStart.Sub(start), cpu1.since(cpu0, len(events)), nil
	}

	// Warm-up: one invoice of each kind per tenant (fills the worker's
	// caches and pool).
	mark := w.tracker.mark()
	for _, r := range runs {
		for range len(c.tenants) {
			if _, err := submit(ctx, r); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
		}
	}
	if _, err := waitDone(mark, len(runs)*len(c.tenants), "pdf warm-up"); err != nil {
		return err
	}

	var repeat []tasks.InvoicePDF // the first burst's invoices, rendered once more
	var repeatMu sync.Mutex
	for i, r := range runs {
		r.throughput, r.burstLat, r.enqueueTime, r.wait, r.burstCPU, err = burst(r.text.kind, b.sz.PDFBurst, func(ctx context.Context) error {
			p, err := submit(ctx, r)
			if err == nil && i == 0 {
				repeatMu.Lock()
				repeat = append(repeat, p)
				repeatMu.Unlock()
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	rendersBefore, unchangedBefore, err := pdfCounts(w)
	if err != nil {
		return err
	}
	var repeated atomic.Int64
	unchangedRate, _, _, _, unchangedCPU, err := burst("unchanged", len(repeat), func(ctx context.Context) error {
		return submitPayload(ctx, repeat[repeated.Add(1)-1])
	})
	if err != nil {
		return err
	}
	rendersAfter, unchangedAfter, err := pdfCounts(w)
	if err != nil {
		return err
	}
	// The row says "no render": a burst that rendered measured renders.
	if err := checkUnchangedBurst(rendersAfter-rendersBefore, unchangedAfter-unchangedBefore, len(repeat)); err != nil {
		return err
	}

	first := runs[0]
	rate := first.throughput / 2
	count := min(int(rate*b.sz.PDFPaced.Seconds()), len(first.invoices[0])*len(c.tenants)-int(first.next.Load()))
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
		if _, err := submit(ctx, first); err != nil {
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
	renders, err := w.counters("tenantworker_pdf_renders_total")
	if err != nil {
		return fmt.Errorf("worker metrics: %w", err)
	}
	unchanged, err := w.counters("tenantworker_pdf_unchanged_total")
	if err != nil {
		return fmt.Errorf("worker metrics: %w", err)
	}
	lanes, err := w.counters("tenantworker_db_lane_choices_total")
	if err != nil {
		return fmt.Errorf("worker metrics: %w", err)
	}
	// The render ceiling again, after the load: on a shared machine one
	// short sample can be far off; the mean of both is the baseline.
	for _, r := range runs {
		after, _, err := renderBaseline(ctx, r.text, b.sz.RenderBaseline)
		if err != nil {
			return err
		}
		r.render = append(r.render, after)
	}

	b.pdfRates = map[string]float64{}
	for _, r := range runs {
		b.pdfRates[r.text.kind] = r.throughput
	}
	for _, r := range runs {
		ceiling := (r.render[0] + r.render[1]) / 2
		s.add(fmt.Sprintf("throughput (burst), %s (%s)", r.text.kind, r.fontPath), r.throughput, "tasks/s").
			against(fmt.Sprintf("pdf.Render of the same invoice in process on %d goroutines", renderParallelism()), ceiling, "renders/s", r.render).
			target(">=", r.target, false, fmt.Sprintf(">= %.0f PDFs/s", r.target))
		if b.bareDrain > 0 {
			s.add(fmt.Sprintf("throughput (burst), %s, vs bare asynq", r.text.kind), r.throughput, "tasks/s").
				against("bare asynq no-op drain (middleware scenario)", b.bareDrain, "tasks/s", nil)
		}
	}
	s.add("throughput (burst), single-byte again, unchanged (no render)", unchangedRate, "tasks/s").
		against("the same invoices' first render (burst above)", first.throughput, "tasks/s", nil)
	for _, r := range runs {
		s.add(fmt.Sprintf("diagnostic: CPU per task in the %s burst, %s", r.text.kind, r.burstCPU.parts()), r.burstCPU.total(), "µs")
		s.note("%s burst CPU per task: %s", r.text.kind, r.burstCPU)
	}
	s.note("unchanged burst CPU per task: %s", unchangedCPU)
	for _, r := range runs {
		s.add(fmt.Sprintf("pdf.Render CPU per %d-line invoice, %s", pdfLines, r.text.kind), r.cpu*1e3, "ms").
			target("<=", 0.4, false, "<= 0.4 ms")
		s.add(fmt.Sprintf("diagnostic: pdf.Render CPU per %d-line invoice, %s, every P", pdfLines, r.text.kind), r.cpuAllPs*1e3, "ms")
		s.add(fmt.Sprintf("allocated per render, %s", r.text.kind), r.allocBytes/1024, "KiB").
			target("<=", 1024, false, "<= 1 MiB")
		s.add(fmt.Sprintf("allocations per render, %s", r.text.kind), r.allocs, "allocs")
	}
	if mw := b.pinnedRatio; mw > 0 {
		s.note("middleware + one pinned query (InTenantBatch) in this run: %.2f of bare asynq's no-op drain (%.0f tasks/s); target >= 0.85, see the middleware scenario", mw, b.bareDrain)
	}
	s.add("latency p50 at half load", millis(percentile(lat, 50)), "ms")
	s.add("latency p99 at half load", millis(percentile(lat, 99)), "ms")
	s.add("handler time p50 at half load", millis(percentile(service, 50)), "ms")
	s.add("handler time p99 at half load", millis(percentile(service, 99)), "ms")
	s.add("latency p50 in burst (queueing)", millis(percentile(first.burstLat, 50)), "ms")
	s.add("latency p99 in burst (queueing)", millis(percentile(first.burstLat, 99)), "ms")
	s.add("document store Put p50 (fsync file + dir)", millis(putP50), "ms")
	s.add("document store Put p99 (fsync file + dir)", millis(putP99), "ms")
	s.note("document store Put: %d puts one at a time, so its p99 is the slowest of them", putSamples)
	s.add("worker peak RSS (VmHWM)", float64(hwm)/(1<<20), "MiB").against("worker RSS when ready", float64(idleRSS)/(1<<20), "MiB", nil)
	for _, r := range runs {
		s.note("%s burst: %d tasks enqueued in %.3f s by 16 goroutines through tasks.Enqueuer (fair admission) while the worker ran; throughput counted from the first handler start (%.2f s after the first enqueue) to the last finish",
			r.text.kind, b.sz.PDFBurst, r.enqueueTime.Seconds(), r.wait.Seconds())
	}
	s.note("paced: %d single-byte tasks at %.0f/s", len(lat), rate)
	s.note("worker's tenantworker_pdf_renders_total by font path: %v; tenantworker_pdf_unchanged_total: %v (warm-up, bursts and paced phase)", renders, unchanged[""])
	s.note("worker's tenantworker_db_lane_choices_total (which lane each tenant unit of work took, DB_POOL_LANES): %v", lanes)
	s.note("the bench enqueues as cmd/enqueue does by default (fair admission, which matches cmd/worker's default FAIR_DISPATCH): an idle worker starts a task when the dispatcher's announcement wakes it; latency minus handler time is the wait in the tenant's backlog and asynq's pending list")
	s.note("RSS is the cmd/worker child process's, from /proc/<pid>/status; allocation per render from runtime.MemStats around renders in the bench process")
	s.Bound = "CPU and the machine's share of it. Per task: the render (single-byte paths about 0.4-0.6 ms of CPU, utf8 more), asynq's Redis round trips (dequeue, result write, done), the worker's two PostgreSQL round trips (lock + load; record + commit + check) and the backend's work for them (planning, and its caches of each tenant's tables, built once per connection and tenant), and the atomic file write with two fsyncs. The burst CPU notes give each process's share per task (2026-12-02: worker 2.4-3.2 ms, redis 0.4-0.5 ms, PostgreSQL 1.5-1.8 ms with DB_POOL_LANES' lanes and the statements written per tenant, 2.3-2.9 ms with the lanes alone, 3.1-4.4 ms with one pool, for a first render on disk; the same unit alone on one connection costs the server 0.19-0.25 ms, invoice's BenchmarkPDFUnit, and the rest is processes waking each other across the shared CPUs); the fsyncs also wait on the disk. The in-process render rate on all CPUs is the ceiling; see docs/performance.md"
	return nil
}

// counters scrapes the worker's /metrics and returns the values of the
// counter name by its one label's value ("" for a counter without labels).
func (p *proc) counters(name string) (map[string]float64, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + p.addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		label := ""
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			if end < 0 {
				continue
			}
			if _, v, ok := strings.Cut(rest[1:end], "="); ok {
				label = strings.Trim(v, `"`)
			}
			rest = rest[end+1:]
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err == nil {
			out[label] = v
		}
	}
	return out, nil
}

// renderCost renders the bench invoice of a kind 200 times in this
// goroutine and returns the CPU seconds (the bench process's user +
// system time, garbage collection included; nothing else runs in it
// then), the bytes and the allocations per render. With procs > 0 it sets
// GOMAXPROCS to procs while it measures.
//
// One P measures what a render costs: the render and the collection of
// its garbage, on one CPU. With every P, the collector also runs
// idle-time mark workers on the Ps that have nothing else to do, which in
// this otherwise idle process adds about half as much CPU again (0.43-0.51
// against 0.28-0.32 ms per render in a process of its own on 2026-12-03;
// the render took longer too, 0.37-0.45 against 0.28-0.32 ms of wall
// time). A worker whose CPUs are busy has no idle Ps for those workers;
// what two busy CPUs cost each other instead shows in the render rate on
// every CPU (renderBaseline).
func renderCost(ctx context.Context, text seedText, procs int) (cpuPer, bytesPer, allocsPer float64, err error) {
	if procs > 0 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
	}
	inv := benchInvoice(text, pdfLines)
	var buf bytes.Buffer
	if _, err := pdf.Render(ctx, &buf, inv); err != nil { // warm fonts and pools
		return 0, 0, 0, fmt.Errorf("render cost: %w", err)
	}
	const n = 200
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu0 := processCPU()
	for range n {
		buf.Reset()
		if _, err := pdf.Render(ctx, &buf, inv); err != nil {
			return 0, 0, 0, fmt.Errorf("render cost: %w", err)
		}
	}
	cpu := processCPU() - cpu0
	runtime.ReadMemStats(&after)
	return cpu.Seconds() / n, float64(after.TotalAlloc-before.TotalAlloc) / n, float64(after.Mallocs-before.Mallocs) / n, nil
}

// processCPU is the bench process's user + system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// putSamples is how many documents putBaseline stores: its p99 is their
// slowest.
const putSamples = 50

// pdfCounts scrapes the worker's renders (all font paths) and unchanged
// documents so far.
func pdfCounts(w *proc) (renders, unchanged float64, err error) {
	r, err := w.counters("tenantworker_pdf_renders_total")
	if err != nil {
		return 0, 0, fmt.Errorf("worker metrics: %w", err)
	}
	for _, v := range r {
		renders += v
	}
	u, err := w.counters("tenantworker_pdf_unchanged_total")
	if err != nil {
		return 0, 0, fmt.Errorf("worker metrics: %w", err)
	}
	return renders, u[""], nil
}

// checkUnchangedBurst fails the unchanged burst (tasks invoices rendered
// before, not edited since) unless the worker rendered none of them and
// kept every stored document: otherwise its "no render" rate is not one.
func checkUnchangedBurst(renders, unchanged float64, tasks int) error {
	if renders != 0 || unchanged < float64(tasks) {
		return fmt.Errorf("unchanged burst: the worker rendered %.0f and kept %.0f stored documents for %d unchanged invoices, want 0 and %d", renders, unchanged, tasks, tasks)
	}
	return nil
}

// putBaseline stores the bench invoice's PDF putSamples times with storage.FS,
// as the handler does (temp file, fsync, rename, directory fsync), one at
// a time in the scratch directory's file system, and returns p50 and p99.
func (b *bench) putBaseline(ctx context.Context) (p50, p99 time.Duration, err error) {
	var buf bytes.Buffer
	if _, err := pdf.Render(ctx, &buf, benchInvoice(singleByte, pdfLines)); err != nil {
		return 0, 0, fmt.Errorf("put baseline: %w", err)
	}
	fs, err := storage.NewFS(filepath.Join(b.env.dir, "put-baseline"))
	if err != nil {
		return 0, 0, fmt.Errorf("put baseline: %w", err)
	}
	lat := make([]time.Duration, 0, putSamples)
	for i := range putSamples {
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

// renderBaseline renders the bench invoice of a kind on every CPU for d
// and returns renders per second and the font path it took.
func renderBaseline(ctx context.Context, text seedText, d time.Duration) (float64, pdf.FontPath, error) {
	inv := benchInvoice(text, pdfLines)
	res, err := pdf.Render(ctx, io.Discard, inv) // warm fonts
	if err != nil {
		return 0, "", fmt.Errorf("render baseline: %w", err)
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
		return 0, "", fmt.Errorf("render baseline: %w", err)
	}
	return float64(n.Load()) / time.Since(start).Seconds(), res.FontPath, nil
}

// burstSample is one reading of the CPU the processes of a burst spent.
type burstSample struct {
	servers cpuSample
	worker  time.Duration
	machine procstat.Machine // every CPU's states (/proc/stat)
}

// sampleBurstCPU reads the bench's, the servers' and the worker's CPU.
func sampleBurstCPU(probe *cpuProbe, w *proc) (burstSample, error) {
	s, err := probe.sample()
	if err != nil {
		return burstSample{}, err
	}
	st, err := procstat.Read(w.proc.Pid())
	if err != nil {
		return burstSample{}, fmt.Errorf("worker cpu: %w", err)
	}
	m, err := procstat.ReadMachine()
	if err != nil {
		return burstSample{}, fmt.Errorf("machine cpu: %w", err)
	}
	return burstSample{servers: s, worker: st.CPU, machine: m}, nil
}

// burstCPU is the CPU each process spent per task of a burst, in
// microseconds (the servers' only when they are local: redisMeasured and
// postgresMeasured say which were).
type burstCPU struct {
	worker, redis, postgres, bench  float64
	busy                            float64 // share of the machine's CPUs
	redisMeasured, postgresMeasured bool
	// machine is how the machine's CPUs spent the burst, every process
	// and the kernel's threads included (zero when /proc/stat's times did
	// not advance).
	machine procstat.Machine
}

// since returns the CPU per task spent from an earlier sample to s over
// tasks tasks.
func (s burstSample) since(from burstSample, tasks int) burstCPU {
	u := s.servers.since(from.servers)
	worker := s.worker - from.worker
	c := burstCPU{
		worker: perTask(worker, tasks), redis: perTask(u.redis, tasks),
		postgres: perTask(u.postgres, tasks), bench: perTask(u.self, tasks),
		redisMeasured: u.redisMeasured, postgresMeasured: u.postgresMeasured,
	}
	if u.wall > 0 {
		c.busy = float64(u.total()+worker) / (float64(u.wall) * float64(runtime.NumCPU()))
	}
	if m := s.machine.Sub(from.machine); m.Total() > 0 {
		c.machine = m
	}
	return c
}

// total is the CPU per task of the worker and the measured servers (the
// bench's enqueuing and log reading left out).
func (c burstCPU) total() float64 { return c.worker + c.redis + c.postgres }

// parts names what total sums: "worker + redis + postgres", without the
// servers that were not measured.
func (c burstCPU) parts() string {
	p := "worker"
	if c.redisMeasured {
		p += " + redis"
	}
	if c.postgresMeasured {
		p += " + postgres"
	}
	return p
}

// String is the breakdown, for a note; servers that were not measured are
// left out, not shown as 0.
func (c burstCPU) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "worker %.0f µs", c.worker)
	if c.redisMeasured {
		fmt.Fprintf(&b, ", redis-server %.0f µs", c.redis)
	}
	if c.postgresMeasured {
		fmt.Fprintf(&b, ", postgres %.0f µs", c.postgres)
	}
	fmt.Fprintf(&b, " (sum %.0f µs); bench process (enqueue, log reading) %.0f µs; %.0f%% of %d CPUs busy",
		c.total(), c.bench, 100*c.busy, runtime.NumCPU())
	if t := c.machine.Total(); t > 0 {
		share := func(d time.Duration) float64 { return 100 * float64(d) / float64(t) }
		fmt.Fprintf(&b, "; the machine's CPUs (/proc/stat, every process and kernel thread): %.0f%% user, %.0f%% kernel, %.0f%% idle, %.0f%% iowait, %.0f%% steal",
			share(c.machine.User), share(c.machine.Kernel), share(c.machine.Idle), share(c.machine.IOWait), share(c.machine.Steal))
	}
	return b.String()
}
