package tasks

import (
	"fmt"
	"time"

	"github.com/invoicing/tenantworker/tenantctx"
)

// Task type names. They are stable wire names (area:action): tasks already
// in Redis must keep working across deploys, so never derive them from Go
// type names and never rename them.
const (
	TypeInvoicePDF      = "invoice:pdf"
	TypeInvoiceReminder = "invoice:reminder"
	TypeInvoicesOverdue = "invoices:overdue"
	TypeSweepOverdue    = "sweep:overdue"
	TypeSweepDocuments  = "sweep:documents"
	TypeDocumentsPrune  = "documents:prune"
	TypeTenantMigrate   = "tenant:migrate"
	TypeTenantDestroy   = "tenant:destroy"
)

// InvoicePDF renders one invoice to PDF and stores it.
type InvoicePDF struct {
	TenantID  string `json:"tenant_id"`
	InvoiceID int64  `json:"invoice_id"`
}

// TypeName implements Payload.
func (InvoicePDF) TypeName() string { return TypeInvoicePDF }

// Owner implements TenantPayload.
func (p InvoicePDF) Owner() string { return p.TenantID }

// Spec implements Payload: one pending render per invoice; a finished one
// is kept for an hour so its state and result can be polled, then replaced
// by the next request. A request while the render runs gets a follow-up
// render (ReplaceFinishedFollowRunning): the running one may have loaded
// the invoice before the edit the request is for.
func (p InvoicePDF) Spec() Spec {
	return Spec{Queue: QueueDefault, TaskID: taskID(TypeInvoicePDF, p.TenantID, p.InvoiceID),
		MaxRetry: 10, Timeout: 2 * time.Minute, Retention: time.Hour, Conflict: ReplaceFinishedFollowRunning}
}

// Validate implements Payload: a positive invoice id.
func (p InvoicePDF) Validate() error { return positiveInvoice(p.InvoiceID) }

// InvoiceReminder emails the customer of one overdue invoice, at most once
// per day.
type InvoiceReminder struct {
	TenantID  string `json:"tenant_id"`
	InvoiceID int64  `json:"invoice_id"`
	// Day is the reminder's calendar day, YYYY-MM-DD: the tenant's local
	// date (tenantctx.Tenant.Day), not the UTC one. It is part of the task
	// id and of the invoice_reminders unique key. A run on another day of
	// the tenant's claims that day's row too.
	Day string `json:"day"`
}

// TypeName implements Payload.
func (InvoiceReminder) TypeName() string { return TypeInvoiceReminder }

// Owner implements TenantPayload.
func (p InvoiceReminder) Owner() string { return p.TenantID }

// Spec implements Payload: one pending reminder per invoice per day (the
// id includes the day). A finished one is replaced by the next enqueue: a
// run that sent nothing (the invoice was not overdue yet) must not use up
// the day, and the worker's invoice_reminders row, not the task, keeps it
// to one email a day. Finished tasks are kept past the end of the day so
// their state and result can be polled.
func (p InvoiceReminder) Spec() Spec {
	return Spec{Queue: QueueLow, TaskID: taskID(TypeInvoiceReminder, p.TenantID, p.InvoiceID, p.Day),
		MaxRetry: 10, Timeout: time.Minute, Retention: 48 * time.Hour, Conflict: ReplaceFinished}
}

// Validate implements Payload: a positive invoice id and a YYYY-MM-DD day
// that PostgreSQL's date type takes. Go parses year 0000, which PostgreSQL
// refuses (there is no year 0): such a day is refused here, not retried
// on every run. For years 0001-9999 both take the same days (the
// proleptic Gregorian calendar).
func (p InvoiceReminder) Validate() error {
	if err := positiveInvoice(p.InvoiceID); err != nil {
		return err
	}
	d, err := time.Parse(time.DateOnly, p.Day)
	if err != nil || d.Format(time.DateOnly) != p.Day {
		return fmt.Errorf("day must be YYYY-MM-DD, got %.20q", p.Day)
	}
	if d.Year() < 1 {
		return fmt.Errorf("day must be in year 0001 or later, got %.20q", p.Day)
	}
	return nil
}

// InvoicesOverdue marks one tenant's late invoices overdue and enqueues
// reminders for them (from the worker's REMINDER_SEND_HOUR of the tenant's
// day: a run before it enqueues none).
type InvoicesOverdue struct {
	TenantID string `json:"tenant_id"`
	// Tick is the sweep tick that produced the task (Unix seconds); it
	// makes the task id unique per tenant per tick.
	Tick int64 `json:"tick"`
}

// TypeName implements Payload.
func (InvoicesOverdue) TypeName() string { return TypeInvoicesOverdue }

// Owner implements TenantPayload.
func (p InvoicesOverdue) Owner() string { return p.TenantID }

// Spec implements Payload: one per tenant per sweep tick.
func (p InvoicesOverdue) Spec() Spec {
	return Spec{Queue: QueueLow, TaskID: taskID(TypeInvoicesOverdue, p.TenantID, p.Tick),
		MaxRetry: 10, Timeout: 5 * time.Minute, Retention: 24 * time.Hour, Conflict: KeepExisting}
}

// Validate implements Payload: a non-negative tick.
func (p InvoicesOverdue) Validate() error { return nonNegative("tick", p.Tick) }

// SweepOverdue fans InvoicesOverdue out to every tenant whose status lets
// ordinary work run. It is a system task: it has no tenant.
type SweepOverdue struct {
	// Tick is the scheduled time of the cron tick (Unix seconds).
	Tick int64 `json:"tick"`
}

// TypeName implements Payload.
func (SweepOverdue) TypeName() string { return TypeSweepOverdue }

// Spec implements Payload: one per cron tick across every replica; the id
// is the tick time and the task is kept longer than any sensible period.
func (p SweepOverdue) Spec() Spec {
	return Spec{Queue: QueueLow, TaskID: taskID(TypeSweepOverdue, p.Tick),
		MaxRetry: 5, Timeout: 30 * time.Minute, Retention: 24 * time.Hour, Conflict: KeepExisting}
}

// Validate implements Payload: a non-negative tick.
func (p SweepOverdue) Validate() error { return nonNegative("tick", p.Tick) }

// SweepDocuments fans DocumentsPrune out to every tenant whose status
// lets ordinary work run, as SweepOverdue fans out InvoicesOverdue. It is a
// system task: it has no tenant.
type SweepDocuments struct {
	// Tick is the scheduled time of the cron tick (Unix seconds).
	Tick int64 `json:"tick"`
}

// TypeName implements Payload.
func (SweepDocuments) TypeName() string { return TypeSweepDocuments }

// Spec implements Payload: one per cron tick across every replica, as
// SweepOverdue.
func (p SweepDocuments) Spec() Spec {
	return Spec{Queue: QueueLow, TaskID: taskID(TypeSweepDocuments, p.Tick),
		MaxRetry: 5, Timeout: 30 * time.Minute, Retention: 24 * time.Hour, Conflict: KeepExisting}
}

// Validate implements Payload: a non-negative tick.
func (p SweepDocuments) Validate() error { return nonNegative("tick", p.Tick) }

// DocumentsPrune removes from the document store one tenant's PDFs that
// no invoice_documents row records: those of invoices deleted after their
// render (tenancy.Service.PruneDocuments). Each tenant's prune is a task of
// its own, so that it is admitted fairly beside the tenant's other work,
// and a tenant whose database hangs retries alone.
type DocumentsPrune struct {
	TenantID string `json:"tenant_id"`
	// Tick is the scheduled time of the sweep's cron tick (Unix seconds);
	// it makes the task id unique per tenant per tick.
	Tick int64 `json:"tick"`
}

// TypeName implements Payload.
func (DocumentsPrune) TypeName() string { return TypeDocumentsPrune }

// Owner implements TenantPayload.
func (p DocumentsPrune) Owner() string { return p.TenantID }

// Spec implements Payload: one per tenant per sweep tick. A tenant's
// prune takes one unit of work per 100 documents; the timeout leaves room
// for a few hundred thousand. It reads its tenant's catalog row (and
// placement) on "main" afresh: NeedsCatalog.
func (p DocumentsPrune) Spec() Spec {
	return Spec{Queue: QueueLow, TaskID: taskID(TypeDocumentsPrune, p.TenantID, p.Tick),
		MaxRetry: 10, Timeout: 30 * time.Minute, Retention: 24 * time.Hour, Conflict: KeepExisting,
		NeedsCatalog: true}
}

// Validate implements Payload: a non-negative tick.
func (p DocumentsPrune) Validate() error { return nonNegative("tick", p.Tick) }

// TenantMigrate creates or upgrades one tenant's schema.
type TenantMigrate struct {
	TenantID string `json:"tenant_id"`
	// Target is the schema version to migrate to; 0 means the latest.
	Target int `json:"target,omitempty"`
}

// TypeName implements Payload.
func (TenantMigrate) TypeName() string { return TypeTenantMigrate }

// Owner implements TenantPayload.
func (p TenantMigrate) Owner() string { return p.TenantID }

// Spec implements Payload: one pending migration per tenant. It writes
// the tenant's catalog row and audit entries on "main": NeedsCatalog.
func (p TenantMigrate) Spec() Spec {
	return Spec{Queue: QueueCritical, TaskID: taskID(TypeTenantMigrate, p.TenantID),
		MaxRetry: 10, Timeout: 10 * time.Minute, Retention: time.Hour, Conflict: ReplaceFinished,
		Activity: tenantctx.Migration, NeedsCatalog: true}
}

// Validate implements Payload: a non-negative target version.
func (p TenantMigrate) Validate() error {
	if p.Target < 0 {
		return fmt.Errorf("negative target version %d", p.Target)
	}
	return nil
}

// TenantDestroy erases one tenant: schema, documents, keys, catalog row.
type TenantDestroy struct {
	TenantID string `json:"tenant_id"`
}

// TypeName implements Payload.
func (TenantDestroy) TypeName() string { return TypeTenantDestroy }

// Owner implements TenantPayload.
func (p TenantDestroy) Owner() string { return p.TenantID }

// Spec implements Payload: one per tenant. It deletes the tenant's
// catalog row and keys and writes the audit log on "main": NeedsCatalog.
func (p TenantDestroy) Spec() Spec {
	return Spec{Queue: QueueCritical, TaskID: taskID(TypeTenantDestroy, p.TenantID),
		MaxRetry: 10, Timeout: 10 * time.Minute, Retention: 24 * time.Hour, Conflict: ReplaceFinished,
		Activity: tenantctx.Destruction, NeedsCatalog: true}
}

// Validate implements Payload: a destroy has nothing but its tenant.
func (TenantDestroy) Validate() error { return nil }

func positiveInvoice(id int64) error {
	if id <= 0 {
		return fmt.Errorf("invoice_id must be positive, got %d", id)
	}
	return nil
}

func nonNegative(field string, n int64) error {
	if n < 0 {
		return fmt.Errorf("negative %s %d", field, n)
	}
	return nil
}
