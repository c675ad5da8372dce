package tasks

import (
	"fmt"
	"time"
)

// Task type names. They are stable wire names (area:action): tasks already
// in Redis must keep working across deploys, so never derive them from Go
// type names and never rename them.
const (
	TypeInvoicePDF      = "invoice:pdf"
	TypeInvoiceReminder = "invoice:reminder"
	TypeInvoicesOverdue = "invoices:overdue"
	TypeSweepOverdue    = "sweep:overdue"
	TypeTenantMigrate   = "tenant:migrate"
	TypeTenantDestroy   = "tenant:destroy"
)

// Queue names. Do not create a queue per tenant: an asynq server polls every
// queue it serves and its throughput falls with each one.
const (
	QueueCritical = "critical"
	QueueDefault  = "default"
	QueueLow      = "low"
)

// QueueWeights are the asynq server's queue priorities (6/3/1).
var QueueWeights = map[string]int{QueueCritical: 6, QueueDefault: 3, QueueLow: 1}

// Queues lists the queues in priority order.
var Queues = []string{QueueCritical, QueueDefault, QueueLow}

// systemTypes are the task types that run without a tenant. Every other type
// fails closed when its payload has no tenant_id.
var systemTypes = map[string]bool{TypeSweepOverdue: true}

// IsSystemType reports whether typ is a system task that runs without a
// tenant.
func IsSystemType(typ string) bool { return systemTypes[typ] }

// Payload is implemented by every task payload.
type Payload interface {
	// TypeName returns the task's stable wire name.
	TypeName() string
}

// TenantPayload is a payload that belongs to one tenant.
type TenantPayload interface {
	Payload
	// Tenant returns the payload's tenant id.
	Tenant() string
}

// InvoicePDF renders one invoice to PDF and stores it.
type InvoicePDF struct {
	TenantID  string `json:"tenant_id"`
	InvoiceID int64  `json:"invoice_id"`
}

// InvoiceReminder emails the customer of one overdue invoice, at most once
// per day.
type InvoiceReminder struct {
	TenantID  string `json:"tenant_id"`
	InvoiceID int64  `json:"invoice_id"`
	// Day is the reminder's calendar day (UTC, YYYY-MM-DD); it is part of the
	// task id and of the invoice_reminders unique key.
	Day string `json:"day"`
}

// InvoicesOverdue marks one tenant's late invoices overdue and enqueues
// reminders for them.
type InvoicesOverdue struct {
	TenantID string `json:"tenant_id"`
	// Tick is the sweep tick that produced the task (Unix seconds); it
	// makes the task id unique per tenant per tick.
	Tick int64 `json:"tick"`
}

// SweepOverdue fans InvoicesOverdue out to every active tenant. It is a
// system task: it has no tenant.
type SweepOverdue struct {
	// Tick is the scheduled time of the cron tick (Unix seconds).
	Tick int64 `json:"tick"`
}

// TenantMigrate creates or upgrades one tenant's schema.
type TenantMigrate struct {
	TenantID string `json:"tenant_id"`
	// Target is the schema version to migrate to; 0 means the latest.
	Target int `json:"target,omitempty"`
}

// TenantDestroy erases one tenant: schema, documents, keys, catalog row.
type TenantDestroy struct {
	TenantID string `json:"tenant_id"`
}

// TypeName implements Payload.
func (InvoicePDF) TypeName() string { return TypeInvoicePDF }

// TypeName implements Payload.
func (InvoiceReminder) TypeName() string { return TypeInvoiceReminder }

// TypeName implements Payload.
func (InvoicesOverdue) TypeName() string { return TypeInvoicesOverdue }

// TypeName implements Payload.
func (SweepOverdue) TypeName() string { return TypeSweepOverdue }

// TypeName implements Payload.
func (TenantMigrate) TypeName() string { return TypeTenantMigrate }

// TypeName implements Payload.
func (TenantDestroy) TypeName() string { return TypeTenantDestroy }

// Tenant implements TenantPayload.
func (p InvoicePDF) Tenant() string { return p.TenantID }

// Tenant implements TenantPayload.
func (p InvoiceReminder) Tenant() string { return p.TenantID }

// Tenant implements TenantPayload.
func (p InvoicesOverdue) Tenant() string { return p.TenantID }

// Tenant implements TenantPayload.
func (p TenantMigrate) Tenant() string { return p.TenantID }

// Tenant implements TenantPayload.
func (p TenantDestroy) Tenant() string { return p.TenantID }

// DayOf returns t's calendar day in UTC as YYYY-MM-DD, the form used in
// reminder task ids and rows.
func DayOf(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// taskID builds a task id from its parts; ids are unique within a queue and
// name their type and tenant so operators can read them in the dashboard.
func taskID(typ string, parts ...any) string {
	id := typ
	for _, p := range parts {
		id += fmt.Sprintf(":%v", p)
	}
	return id
}
