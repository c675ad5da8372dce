package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// overduePageSize is how many invoice ids InvoicesOverdue reads at once.
const overduePageSize = 500

// overdueResult is the task result of invoices:overdue.
type overdueResult struct {
	Marked    int64 `json:"marked_overdue"`
	Reminders int   `json:"reminders_enqueued"`
	Existing  int   `json:"reminders_existing"`
	// DeferredUntil is set ("09:00") when the run enqueued no reminder
	// because the tenant's local time is before Handlers.ReminderSendHour.
	DeferredUntil string `json:"reminders_deferred_until,omitempty"`
	// BacklogFull is true when the run stopped enqueuing reminders at the
	// tenant's own waiting cap (fair.ErrBacklogFull): the next sweep
	// enqueues the rest.
	BacklogFull bool `json:"reminders_backlog_full,omitempty"`
}

// InvoicesOverdue handles invoices:overdue for the tenant in ctx: one
// statement marks every sent invoice whose due date is before the
// tenant's current date (in its time zone, tenantctx.Tenant.Today)
// overdue (the current time being the task's tick when this worker's
// clock is a little behind it: tickTime; at read committed), then it
// pages through the overdue invoices with something due still due today's reminder
// (the tenant's current calendar day, tenantctx.Tenant.Day;
// invoice.RemindersDue: none sent today, none failed today at the
// customer's current address, none sent since the tenant's midnight under
// a UTC date's key) and enqueues one
// invoice:reminder per invoice, each payload built fresh (P4 in
// docs/architecture.md). A pending reminder of the same invoice and day is
// reported, not enqueued again (its task id); a finished one that sent
// nothing is replaced, so a reminder skipped earlier in the day does not
// keep this one from being sent. Before h.ReminderSendHour of the
// tenant's day it marks overdue invoices but enqueues no reminder: a later
// sweep of the same day does. A reminder refused by the tenant's own
// waiting cap (fair.ErrBacklogFull: its backlog is full) ends the
// enqueuing, and the task completes: the next sweep enqueues the rest, as
// the sweep skips such a tenant (a queue-wide cap, fair.ErrQueueFull,
// fails the task, to be retried). Its task result is
// {"marked_overdue","reminders_enqueued","reminders_existing"}, with
// "reminders_deferred_until":"HH:00" when it deferred them and
// "reminders_backlog_full":true when the backlog stopped them.
func (h *Handlers) InvoicesOverdue(ctx context.Context, p tasks.InvoicesOverdue) error {
	t, err := taskTenant(ctx, p)
	if err != nil {
		return err
	}
	pool, err := h.tenantPool(ctx, t)
	if err != nil {
		return err
	}
	if h.Enqueuer == nil {
		return errors.New("invoices:overdue: no enqueuer configured")
	}
	var res overdueResult
	// Due dates are judged against the tenant's calendar, and so is the
	// reminders' day (once a day per invoice, I10), at the tick's time
	// when this worker's clock has not reached it yet.
	now := t.Today(tickTime(h.now(), p.Tick))
	// At read committed whatever the tenant database's
	// default_transaction_isolation: at repeatable read or serializable a
	// marking that waited for another write of an invoice (an edit, a
	// payment, a reminder marking it) was refused (SQLSTATE 40001) and
	// the task failed; at read committed the committed row is checked
	// against the statement's condition again.
	err = schema.InTenantReadCommitted(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
		res.Marked, err = invoice.MarkOverdue(ctx, tx, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("mark overdue invoices of tenant %s: %w", t.ID, err)
	}

	if now.Hour() < h.ReminderSendHour {
		// Reminders go out from the tenant's own send hour: the first sweep
		// at or after it today enqueues them (the day's key is the same).
		res.DeferredUntil = fmt.Sprintf("%02d:00", h.ReminderSendHour)
	} else if err := h.enqueueReminders(ctx, t, pool, now, &res); err != nil {
		return err
	}
	attrs := []any{slog.Int64("marked_overdue", res.Marked),
		slog.Int("reminders_enqueued", res.Reminders), slog.Int("reminders_existing", res.Existing)}
	if res.DeferredUntil != "" {
		attrs = append(attrs, slog.String("reminders_deferred_until", res.DeferredUntil))
	}
	if res.BacklogFull {
		LoggerFromContext(ctx).WarnContext(ctx, "overdue invoices processed: the tenant's backlog is full, the next sweep enqueues the other reminders", attrs...)
		return writeResult(ctx, res)
	}
	LoggerFromContext(ctx).InfoContext(ctx, "overdue invoices processed", attrs...)
	return writeResult(ctx, res)
}

// maxTickLead is how far ahead of a worker's clock a sweep tick may be
// for its invoices:overdue to be judged at the tick (tickTime): more than
// the few seconds by which the machines' clocks may disagree, far less
// than an hour.
const maxTickLead = time.Minute

// tickTime returns the time an invoices:overdue of tick (Unix seconds)
// judges due dates and the send hour at: now, this worker's clock, or the
// tick when now is before it by at most maxTickLead. A scheduler whose
// clock runs ahead of this worker's fires the tick first (the sweep
// starts at the fastest replica's tick), and the run is the tick's: judged
// on the worker's clock, the 09:00 tick run at 08:59:58 deferred the
// reminders of REMINDER_SEND_HOUR=9 to the next sweep (with the hour 23,
// to the next day), and the midnight tick judged due dates against the day
// before. A tick further ahead (a clock far off) is judged on the
// worker's clock; a retried or late run (now after the tick) on now.
// invoice:reminder runs at its day's start (dayStart) likewise, as the
// midnight tick's sweep enqueues the new day's reminders.
func tickTime(now time.Time, tick int64) time.Time {
	at := time.Unix(tick, 0)
	if now.Before(at) && at.Sub(now) <= maxTickLead {
		return at
	}
	return now
}

// dayStart returns the first instant of day (a date, as a reminder's day
// parses: midnight UTC) in tenant t's time zone (tenantctx.StartOfDay).
func dayStart(t tenantctx.Tenant, day time.Time) time.Time {
	return tenantctx.StartOfDay(time.Date(day.Year(), day.Month(), day.Day(), 12, 0, 0, 0, t.Location()))
}

// enqueueReminders is InvoicesOverdue's second step: it pages through the
// invoices of tenant t whose reminder of now's day is due
// (invoice.RemindersDue) and enqueues one invoice:reminder each, counting
// them in res; it stops at the tenant's waiting cap (res.BacklogFull).
// Every overdueProgressPages pages with more to come it logs its progress
// at info, so that a long sweep of a large tenant is seen to move.
func (h *Handlers) enqueueReminders(ctx context.Context, t tenantctx.Tenant, pool *pgxpool.Pool, now time.Time, res *overdueResult) error {
	pageSize := h.page(overduePageSize)
	day := t.Day(now)
	var after int64
	for pages := 1; ; pages++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("enqueue reminders of tenant %s: %w", t.ID, err)
		}
		var ids []int64
		err := schema.InTenant(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
			var err error
			ids, err = invoice.RemindersDue(ctx, tx, now, after, pageSize)
			return err
		})
		if err != nil {
			return fmt.Errorf("list overdue invoices of tenant %s: %w", t.ID, err)
		}
		for _, id := range ids {
			r, err := h.Enqueuer.Enqueue(ctx, tasks.InvoiceReminder{TenantID: t.ID, InvoiceID: id, Day: day})
			if errors.Is(err, fair.ErrBacklogFull) {
				res.BacklogFull = true
				return nil
			}
			if err != nil {
				return fmt.Errorf("enqueue reminder for invoice %d of tenant %s: %w", id, t.ID, err)
			}
			if r.Existing {
				res.Existing++
			} else {
				res.Reminders++
			}
		}
		if len(ids) < pageSize {
			break
		}
		after = ids[len(ids)-1]
		if pages%overdueProgressPages == 0 {
			LoggerFromContext(ctx).InfoContext(ctx, "overdue invoices: enqueueing reminders",
				slog.Int("pages", pages), slog.Int64("after_invoice_id", after),
				slog.Int("reminders_enqueued", res.Reminders), slog.Int("reminders_existing", res.Existing))
		}
	}
	return nil
}

// overdueProgressPages is how many pages of reminders (overduePageSize
// invoices each) enqueueReminders enqueues between two logs of its
// progress.
const overdueProgressPages = 10

// sweepPageSize is how many tenants a sweep reads at once.
const sweepPageSize = storage.DefaultPageSize

// sweepResult is the task result of a sweep (sweep:overdue,
// sweep:documents).
type sweepResult struct {
	Tenants  int `json:"tenants"`
	Enqueued int `json:"enqueued"`
	Existing int `json:"existing"`
	// Skipped counts tenants whose backlog was full (fair.ErrBacklogFull):
	// they get their task at the next tick.
	Skipped int `json:"skipped,omitempty"`
	// queueFull is the first fair.ErrQueueFull met: a queue (shard) at its
	// queue-wide cap; its tenants were skipped, the others swept.
	queueFull error
}

// SweepOverdue handles sweep:overdue, a system task without a tenant: it
// enqueues one invoices:overdue per tenant whose status lets ordinary work
// run (sweep). Its task result is {"tenants","enqueued","existing"} and
// "skipped" when some were.
func (h *Handlers) SweepOverdue(ctx context.Context, p tasks.SweepOverdue) error {
	return h.sweep(ctx, "overdue", p.Tick, func(tenantID string) tasks.Payload {
		return tasks.InvoicesOverdue{TenantID: tenantID, Tick: p.Tick}
	})
}

// sweep is a sweep's fan-out: it pages through the tenants of h.Catalog
// whose status lets ordinary work run (the status policy: active ones),
// in id order, and enqueues task(tenant id) for each, a payload built
// fresh for its tenant (P4 in docs/architecture.md) whose task id includes
// the tick, so that a rerun of the same sweep (a retry, another replica)
// enqueues nothing new. Provisioning, suspended and deleting tenants get
// none (P6). A tenant whose own backlog is full (fair.ErrBacklogFull) is
// skipped, logged and counted, and gets its task at the next tick: one
// tenant's backlog never stops the sweep of the others; a tenant whose
// queue (shard) is at its queue-wide cap too, and the sweep then fails
// after the others, so that its retry enqueues what was refused. A tenant
// erased after its page was read (storage.ErrNotFound) is skipped and
// logged, not counted. name names the sweep in logs and errors.
func (h *Handlers) sweep(ctx context.Context, name string, tick int64, task func(tenantID string) tasks.Payload) error {
	pageSize := h.page(sweepPageSize)
	if h.Enqueuer == nil {
		return fmt.Errorf("sweep:%s: no enqueuer configured", name)
	}
	var res sweepResult
	for _, status := range tenantctx.Statuses {
		if status.Decide(tenantctx.Work) != tenantctx.Run {
			continue
		}
		if err := h.sweepStatus(ctx, name, tick, status, pageSize, task, &res); err != nil {
			return err
		}
	}
	if res.queueFull != nil {
		// Every other tenant was swept; a retry of the sweep enqueues only
		// what the full queues refused (the rest is existing).
		return fmt.Errorf("sweep %s (tick %d): %d tenants skipped: %w", name, tick, res.Skipped, res.queueFull)
	}
	LoggerFromContext(ctx).InfoContext(ctx, name+" sweep done", slog.Int64("tick", tick),
		slog.Int("tenants", res.Tenants), slog.Int("enqueued", res.Enqueued), slog.Int("existing", res.Existing), slog.Int("skipped", res.Skipped))
	return writeResult(ctx, res)
}

// sweepStatus is sweep's fan-out to the tenants in status.
func (h *Handlers) sweepStatus(ctx context.Context, name string, tick int64, status tenantctx.Status, pageSize int,
	task func(tenantID string) tasks.Payload, res *sweepResult) error {
	log := LoggerFromContext(ctx)
	opts := storage.ListOptions{Status: status, Limit: pageSize}
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("sweep %s (tick %d): %w", name, tick, err)
		}
		page, err := h.Catalog.ListTenants(ctx, opts)
		if err != nil {
			return fmt.Errorf("sweep %s (tick %d): list tenants after %q: %w", name, tick, opts.After, err)
		}
		for _, t := range page {
			if t.Status.Decide(tenantctx.Work) != tenantctx.Run {
				continue // the catalog filters already; never trust a page blindly
			}
			r, err := h.Enqueuer.Enqueue(ctx, task(t.ID))
			if errors.Is(err, storage.ErrNotFound) {
				// Erased since the page was read (fair dispatch looks the
				// tenant up): nothing left to sweep, and the tenants after
				// it must not wait for a retry of the whole sweep.
				log.InfoContext(ctx, name+" sweep skipped a tenant erased since it was listed",
					slog.String("tenant_id", t.ID), slog.Int64("tick", tick))
				continue
			}
			res.Tenants++
			if errors.Is(err, fair.ErrBacklogFull) {
				// That tenant's own backlog is full (its reminders, say):
				// it waits for the next tick; the others must not.
				res.Skipped++
				log.WarnContext(ctx, name+" sweep skipped a tenant: its backlog is full",
					slog.String("tenant_id", t.ID), slog.Int64("tick", tick))
				continue
			}
			if errors.Is(err, fair.ErrQueueFull) {
				// The tenant's queue (shard) is at its queue-wide cap: the
				// tenants of the other shards must not wait for it.
				res.Skipped++
				if res.queueFull == nil {
					res.queueFull = fmt.Errorf("tenant %s: %w", t.ID, err)
				}
				log.WarnContext(ctx, name+" sweep skipped a tenant: its queue is full",
					slog.String("tenant_id", t.ID), slog.Int64("tick", tick))
				continue
			}
			if err != nil {
				return fmt.Errorf("sweep %s (tick %d): tenant %s: %w", name, tick, t.ID, err)
			}
			if r.Existing {
				res.Existing++
			} else {
				res.Enqueued++
			}
		}
		if len(page) < opts.PageLimit() {
			return nil
		}
		opts.After = page[len(page)-1].ID
	}
}
