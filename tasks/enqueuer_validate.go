package tasks

import (
	"fmt"
	"time"

	"github.com/invoicing/tenantworker/tenantctx"
)

// Validate checks a payload before it is enqueued and after the worker
// decoded it: a known type, a valid tenant id for tenant payloads, invoice
// ids > 0, a reminder day in YYYY-MM-DD form, non-negative ticks and
// targets. Errors wrap ErrInvalidPayload.
func Validate(p Payload) error {
	if p == nil {
		return fmt.Errorf("%w: nil payload", ErrInvalidPayload)
	}
	var err error
	switch p := p.(type) {
	case InvoicePDF:
		err = validateInvoice(p.TenantID, p.InvoiceID)
	case InvoiceReminder:
		err = validateInvoice(p.TenantID, p.InvoiceID)
		if err == nil {
			err = validateDay(p.Day)
		}
	case InvoicesOverdue:
		err = validateTenantID(p.TenantID)
		if err == nil && p.Tick < 0 {
			err = fmt.Errorf("negative tick %d", p.Tick)
		}
	case SweepOverdue:
		if p.Tick < 0 {
			err = fmt.Errorf("negative tick %d", p.Tick)
		}
	case TenantMigrate:
		err = validateTenantID(p.TenantID)
		if err == nil && p.Target < 0 {
			err = fmt.Errorf("negative target version %d", p.Target)
		}
	case TenantDestroy:
		err = validateTenantID(p.TenantID)
	default:
		return fmt.Errorf("%w: unknown payload type %T", ErrInvalidPayload, p)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidPayload, p.TypeName(), err)
	}
	return nil
}

func validateTenantID(id string) error {
	if err := tenantctx.ValidateID(id); err != nil {
		return fmt.Errorf("tenant_id: %w", err)
	}
	return nil
}

func validateInvoice(tenantID string, invoiceID int64) error {
	if err := validateTenantID(tenantID); err != nil {
		return err
	}
	if invoiceID <= 0 {
		return fmt.Errorf("invoice_id must be positive, got %d", invoiceID)
	}
	return nil
}

func validateDay(day string) error {
	d, err := time.Parse(time.DateOnly, day)
	if err != nil || d.Format(time.DateOnly) != day {
		return fmt.Errorf("day must be YYYY-MM-DD, got %.20q", day)
	}
	return nil
}
