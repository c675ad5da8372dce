package tasks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/invoicing/tenantworker/pdf"
)

// errInvoiceNotFound is returned by loadInvoice for an id the tenant's
// schema does not hold.
var errInvoiceNotFound = errors.New("invoice not found")

// invoiceRecord is one invoice as stored in a tenant schema, with its
// customer and line items.
type invoiceRecord struct {
	ID       int64
	Number   string
	Status   string
	Currency string
	IssuedAt time.Time
	DueAt    time.Time
	Notes    string
	Customer pdf.Customer
	Lines    []pdf.Line
}

// document returns the record as the pdf package's Invoice. Dates are in
// UTC so that every worker renders the same bytes whatever its time zone.
func (r invoiceRecord) document(tenantName string) pdf.Invoice {
	return pdf.Invoice{
		TenantName: tenantName,
		Number:     r.Number,
		IssuedAt:   r.IssuedAt.UTC(),
		DueAt:      r.DueAt.UTC(),
		Status:     r.Status,
		Currency:   r.Currency,
		Customer:   r.Customer,
		Lines:      r.Lines,
		Notes:      r.Notes,
	}
}

// loadInvoiceSQL reads an invoice and its customer. Columns are named (no
// SELECT *: tenants sit at different schema versions); the tables are
// unqualified and resolve in the schema schema.InTenant pinned.
const loadInvoiceSQL = `
SELECT i.number, i.status, i.currency, i.issued_at, i.due_date, i.notes,
       c.name, COALESCE(c.company, ''), c.email, COALESCE(c.address, '')
  FROM invoices i
  JOIN customers c ON c.id = i.customer_id
 WHERE i.id = $1`

// loadLinesSQL reads the line items in print order. Money is read as text
// and parsed into exact decimals: never float64.
const loadLinesSQL = `
SELECT description, quantity::text, unit_price::text
  FROM line_items
 WHERE invoice_id = $1
 ORDER BY position, id`

// loadInvoice reads invoice id with its customer and line items in tx, a
// transaction pinned to the tenant's schema. It returns errInvoiceNotFound
// when there is no such invoice.
func loadInvoice(ctx context.Context, tx pgx.Tx, id int64) (invoiceRecord, error) {
	r := invoiceRecord{ID: id}
	err := tx.QueryRow(ctx, loadInvoiceSQL, id).Scan(
		&r.Number, &r.Status, &r.Currency, &r.IssuedAt, &r.DueAt, &r.Notes,
		&r.Customer.Name, &r.Customer.Company, &r.Customer.Email, &r.Customer.Address)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, errInvoiceNotFound
	}
	if err != nil {
		return r, fmt.Errorf("load invoice %d: %w", id, err)
	}
	r.Currency = strings.TrimSpace(r.Currency) // char(3) pads
	rows, err := tx.Query(ctx, loadLinesSQL, id)
	if err != nil {
		return r, fmt.Errorf("load line items of invoice %d: %w", id, err)
	}
	var desc, qty, price string
	_, err = pgx.ForEachRow(rows, []any{&desc, &qty, &price}, func() error {
		l := pdf.Line{Description: desc}
		var err error
		if l.Quantity, err = decimal.NewFromString(qty); err != nil {
			return fmt.Errorf("quantity %q: %w", qty, err)
		}
		if l.UnitPrice, err = decimal.NewFromString(price); err != nil {
			return fmt.Errorf("unit price %q: %w", price, err)
		}
		r.Lines = append(r.Lines, l)
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("load line items of invoice %d: %w", id, err)
	}
	return r, nil
}

// invoiceNotFound is the permanent error of a task whose invoice does not
// exist: retrying cannot make it appear.
func invoiceNotFound(id int64, tenantID string) error {
	return fmt.Errorf("invoice %d not found in tenant %s: %w", id, tenantID, asynq.SkipRetry)
}
