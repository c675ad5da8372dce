package tasks

import (
	"time"

	"github.com/hibiken/asynq"
)

// ConflictPolicy says what Enqueue does when a task with the same id already
// exists.
type ConflictPolicy int

const (
	// KeepExisting returns the existing task, whatever its state (one per
	// invoice per day, one per tick).
	KeepExisting ConflictPolicy = iota
	// ReplaceFinished returns the existing task while it is pending, active,
	// scheduled or waiting to retry, and replaces it with a new one when it
	// has completed or was archived (a new PDF render after the last one
	// finished).
	ReplaceFinished
)

// Spec is how one task is enqueued: queue, id, retries, timeout, retention
// and what to do on an id conflict. Spec is computed fresh for every task
// (never a shared mutable options value: PITFALLS P4).
type Spec struct {
	Queue     string
	TaskID    string
	MaxRetry  int
	Timeout   time.Duration
	Retention time.Duration
	Conflict  ConflictPolicy
}

// Options returns s as asynq options.
func (s Spec) Options() []asynq.Option {
	opts := []asynq.Option{asynq.Queue(s.Queue), asynq.MaxRetry(s.MaxRetry), asynq.Timeout(s.Timeout)}
	if s.TaskID != "" {
		opts = append(opts, asynq.TaskID(s.TaskID))
	}
	if s.Retention > 0 {
		opts = append(opts, asynq.Retention(s.Retention))
	}
	return opts
}

// SpecFor returns the enqueue spec of a payload per DESIGN.md's task table.
func SpecFor(p Payload) Spec {
	switch p := p.(type) {
	case InvoicePDF:
		// One pending render per invoice; a finished one is kept for an
		// hour so its state and result can be polled, then replaced by the
		// next request.
		return Spec{Queue: QueueDefault, TaskID: taskID(TypeInvoicePDF, p.TenantID, p.InvoiceID),
			MaxRetry: 10, Timeout: 2 * time.Minute, Retention: time.Hour, Conflict: ReplaceFinished}
	case InvoiceReminder:
		// One per invoice per day: the id includes the day and the task is
		// kept past the end of that day.
		return Spec{Queue: QueueLow, TaskID: taskID(TypeInvoiceReminder, p.TenantID, p.InvoiceID, p.Day),
			MaxRetry: 10, Timeout: time.Minute, Retention: 48 * time.Hour, Conflict: KeepExisting}
	case InvoicesOverdue:
		return Spec{Queue: QueueLow, TaskID: taskID(TypeInvoicesOverdue, p.TenantID, p.Tick),
			MaxRetry: 10, Timeout: 5 * time.Minute, Retention: 24 * time.Hour, Conflict: KeepExisting}
	case SweepOverdue:
		// One per cron tick across every replica: the id is the tick time
		// and the task is kept longer than any sensible period.
		return Spec{Queue: QueueLow, TaskID: taskID(TypeSweepOverdue, p.Tick),
			MaxRetry: 5, Timeout: 30 * time.Minute, Retention: 24 * time.Hour, Conflict: KeepExisting}
	case TenantMigrate:
		return Spec{Queue: QueueCritical, TaskID: taskID(TypeTenantMigrate, p.TenantID),
			MaxRetry: 10, Timeout: 10 * time.Minute, Retention: time.Hour, Conflict: ReplaceFinished}
	case TenantDestroy:
		return Spec{Queue: QueueCritical, TaskID: taskID(TypeTenantDestroy, p.TenantID),
			MaxRetry: 10, Timeout: 10 * time.Minute, Retention: 24 * time.Hour, Conflict: ReplaceFinished}
	}
	// Unknown payload types get safe defaults; NewTask refuses them anyway.
	return Spec{Queue: QueueDefault, MaxRetry: 5, Timeout: time.Minute}
}
