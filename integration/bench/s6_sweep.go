package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/tasks"
)

// sweep is scenario 6: tenants with OverdueEach sent invoices past due
// each; the bench enqueues one sweep:overdue (the tick) and times, from
// that enqueue, the last invoices:overdue task finishing (each enqueues
// its tenant's reminders before it returns, so by then every reminder is
// enqueued) and the last invoice:reminder finishing (the email written by
// the file mailer). It reuses the migrate scenario's tenants when that
// ran; otherwise it creates them directly.
//
// Baseline: bare asynq.Client.Enqueue of as many tasks (tenants +
// reminders) from as many goroutines as the worker's concurrency, into a
// queue the worker does not serve: the Redis cost of the fan-out alone.
func (b *bench) sweep(ctx context.Context, s *Scenario) error {
	fleet, err := b.openFleet(ctx)
	if err != nil {
		return err
	}
	if len(fleet.tenants) == 0 {
		progress("sweep: creating %d active tenants", b.sz.FleetTenants)
		if fleet.tenants, err = seedActiveTenants(ctx, fleet.pool, fleet.pg, "sweep", b.sz.FleetTenants, false); err != nil {
			return err
		}
		s.note("tenants created directly (migrate scenario not run)")
	}
	n, each := len(fleet.tenants), b.sz.OverdueEach
	if active, err := countActive(ctx, fleet.pg); err != nil {
		return err
	} else if active != n {
		return fmt.Errorf("%d active tenants in the catalog, expected %d", active, n)
	}
	reminders := n * each
	s.Sizes["tenants"] = n
	s.Sizes["overdue_per_tenant"] = each
	s.Sizes["reminders"] = reminders
	s.Sizes["worker_concurrency"] = config.DefaultWorkerConcurrency

	progress("sweep: seeding %d overdue invoices", reminders)
	if _, err := seedInvoices(ctx, fleet.pool, fleet.tenants, invoiceSeed{count: each, lines: 1, status: "sent", dueDays: -10, text: singleByte}); err != nil {
		return err
	}

	progress("sweep: baseline, bare enqueue of %d tasks", n+reminders)
	base, err := b.bareFanOut(ctx, fleet.tenants, each)
	if err != nil {
		return err
	}

	w, err := b.startWorker(ctx, fleet.url, "sweep")
	if err != nil {
		return err
	}
	defer w.stop()
	enq, done := b.workerEnqueuer(fleet.pg)
	defer done()

	progress("sweep: tick")
	mark := w.tracker.mark()
	start := time.Now()
	if _, err := enq.Enqueue(ctx, tasks.SweepOverdue{Tick: start.Unix()}); err != nil {
		return fmt.Errorf("enqueue sweep: %w", err)
	}
	err = w.waitFor(ctx, 15*time.Minute, 100*time.Millisecond, "sweep", func() (bool, error) {
		for _, typ := range []string{tasks.TypeSweepOverdue, tasks.TypeInvoicesOverdue, tasks.TypeInvoiceReminder} {
			if _, failed := w.tracker.count(mark, typ); failed > 0 {
				return false, fmt.Errorf("%d %s attempts did not succeed\n%s", failed, typ, w.logTail())
			}
		}
		o, _ := w.tracker.count(mark, tasks.TypeInvoicesOverdue)
		r, _ := w.tracker.count(mark, tasks.TypeInvoiceReminder)
		return o >= n && r >= reminders, nil
	})
	if err != nil {
		return err
	}
	lastOf := map[string]time.Time{}
	firstStart := map[string]time.Time{}
	var sweepHandler time.Duration
	for _, e := range w.tracker.since(mark) {
		if e.At.After(lastOf[e.TaskType]) {
			lastOf[e.TaskType] = e.At
		}
		if began := e.At.Add(-e.Duration); firstStart[e.TaskType].IsZero() || began.Before(firstStart[e.TaskType]) {
			firstStart[e.TaskType] = began
		}
		if e.TaskType == tasks.TypeSweepOverdue {
			sweepHandler = e.Duration
		}
	}
	files, lastFile, err := countMails(filepath.Join(b.env.dir, "sweep", "outbox"))
	if err != nil {
		return err
	}
	if files != reminders {
		return fmt.Errorf("outbox has %d messages, expected %d", files, reminders)
	}

	enqueuedAll := lastOf[tasks.TypeInvoicesOverdue].Sub(start)
	s.add(fmt.Sprintf("tick -> all %d reminders enqueued", reminders), enqueuedAll.Seconds(), "s").
		against("bare Enqueue of as many tasks, 10 goroutines", base.Seconds(), "s", nil).
		target("<", 30, false, "< 30 s (1,000 tenants)")
	s.add("tick -> every invoices:overdue enqueued (sweep done)", lastOf[tasks.TypeSweepOverdue].Sub(start).Seconds(), "s")
	s.add("  tick -> sweep handler started (queue wait)", firstStart[tasks.TypeSweepOverdue].Sub(start).Seconds(), "s")
	s.add("  sweep handler time", sweepHandler.Seconds(), "s")
	s.add("tick -> all reminders sent (file mailer)", lastOf[tasks.TypeInvoiceReminder].Sub(start).Seconds(), "s")
	s.add("tick -> last .eml written (mtime)", lastFile.Sub(start).Seconds(), "s")
	if n != 1000 {
		s.note("the target is for 1,000 tenants; this run used %d", n)
	}
	s.note("the sweep task is a system task: it goes straight into asynq's low queue and the enqueuer announces it, which wakes the idle worker (fair dispatch's idle wait, as after a scheduler tick); the queue wait row is that wake-up")
	s.note("the worker serves reminders while the fan-out still runs (both on the low queue), so the two phases overlap; %d .eml files checked in the outbox", files)
	s.Bound = "Redis round trips: every reminder is one Enqueuer.Enqueue (one enqueue script) made sequentially inside its tenant's invoices:overdue task, 10 tasks at a time; sending: per reminder a pinned transaction (insert/lock the reminder row, load the invoice) and a file written and fsynced with its directory"
	return nil
}

// bareFanOut enqueues len(tenants) invoices:overdue-shaped and
// len(tenants)*each invoice:reminder-shaped tasks with asynq.Client from
// DefaultWorkerConcurrency goroutines into a queue nobody serves, returns
// the time it took and deletes the queue.
func (b *bench) bareFanOut(ctx context.Context, tenants []benchTenant, each int) (time.Duration, error) {
	const queue = "bench-baseline"
	client := asynq.NewClientFromRedisClient(b.env.rdb)
	total := len(tenants) * (each + 1)
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	for range config.DefaultWorkerConcurrency {
		g.Go(func() error {
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return nil
				}
				t := tenants[i%len(tenants)]
				var p tasks.Payload = tasks.InvoiceReminder{TenantID: t.ID, InvoiceID: int64(i), Day: t.Day(start)}
				if i < len(tenants) {
					p = tasks.InvoicesOverdue{TenantID: t.ID, Tick: start.Unix()}
				}
				data, err := json.Marshal(p)
				if err != nil {
					return err
				}
				opts := append(p.Spec().Options(), asynq.Queue(queue))
				if _, err := client.EnqueueContext(gctx, asynq.NewTask(p.TypeName(), data, opts...)); err != nil {
					return fmt.Errorf("bare fan-out: %w", err)
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	insp := asynq.NewInspectorFromRedisClient(b.env.rdb)
	if err := insp.DeleteQueue(queue, true); err != nil {
		return 0, fmt.Errorf("delete baseline queue: %w", err)
	}
	return elapsed, nil
}

// countMails counts the .eml files under dir and returns the latest
// modification time.
func countMails(dir string) (int, time.Time, error) {
	var n int
	var last time.Time
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".eml") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n++
		if info.ModTime().After(last) {
			last = info.ModTime()
		}
		return nil
	})
	if err != nil {
		return 0, last, fmt.Errorf("count outbox: %w", err)
	}
	return n, last, nil
}
