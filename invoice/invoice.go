package invoice

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// ErrNotFound is returned for an invoice id the tenant's schema does not
// hold.
var ErrNotFound = errors.New("invoice not found")

// Invoice is one invoice as stored in a tenant schema, with its customer
// and line items.
type Invoice struct {
	ID       int64
	Number   string
	Status   string
	Currency string
	IssuedAt time.Time
	DueAt    time.Time
	Notes    string
	Customer Customer
	Lines    []Line
}

// Customer is the party an invoice is billed to. Company and Address may be
// empty.
type Customer struct {
	// ID is the customers row; 0 for a customer not stored yet.
	ID      int64
	Name    string
	Company string
	Email   string
	Address string
}

// Line is one line item, in print order.
type Line struct {
	Description string
	Quantity    decimal.Decimal
	UnitPrice   decimal.Decimal
}

// loadSQL reads an invoice and its customer.
const loadSQL = `
SELECT i.number, i.status, i.currency, i.issued_at, i.due_date, i.notes,
       c.id, c.name, COALESCE(c.company, ''), c.email, COALESCE(c.address, '')
  FROM invoices i
  JOIN customers c ON c.id = i.customer_id
 WHERE i.id = $1`

// linesSQL reads the line items in print order. Money is read as text and
// parsed into exact decimals.
const linesSQL = `
SELECT description, quantity::text, unit_price::text
  FROM line_items
 WHERE invoice_id = $1
 ORDER BY position, id`

// Load reads invoice id with its customer and line items. It returns an
// error wrapping ErrNotFound when there is no such invoice.
func Load(ctx context.Context, tx pgx.Tx, id int64) (Invoice, error) {
	inv := Invoice{ID: id}
	c := &inv.Customer
	err := tx.QueryRow(ctx, loadSQL, id).Scan(
		&inv.Number, &inv.Status, &inv.Currency, &inv.IssuedAt, &inv.DueAt, &inv.Notes,
		&c.ID, &c.Name, &c.Company, &c.Email, &c.Address)
	if errors.Is(err, pgx.ErrNoRows) {
		return inv, fmt.Errorf("load invoice %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return inv, fmt.Errorf("load invoice %d: %w", id, err)
	}
	inv.Currency = strings.TrimSpace(inv.Currency) // char(3) pads
	rows, err := tx.Query(ctx, linesSQL, id)
	if err != nil {
		return inv, fmt.Errorf("load line items of invoice %d: %w", id, err)
	}
	var desc, qty, price string
	_, err = pgx.ForEachRow(rows, []any{&desc, &qty, &price}, func() error {
		l := Line{Description: desc}
		var err error
		if l.Quantity, err = decimal.NewFromString(qty); err != nil {
			return fmt.Errorf("quantity %q: %w", qty, err)
		}
		if l.UnitPrice, err = decimal.NewFromString(price); err != nil {
			return fmt.Errorf("unit price %q: %w", price, err)
		}
		inv.Lines = append(inv.Lines, l)
		return nil
	})
	if err != nil {
		return inv, fmt.Errorf("load line items of invoice %d: %w", id, err)
	}
	return inv, nil
}

// Exists reports whether invoice id exists.
func Exists(ctx context.Context, tx pgx.Tx, id int64) (bool, error) {
	var ok bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM invoices WHERE id = $1)`, id).Scan(&ok); err != nil {
		return false, fmt.Errorf("check invoice %d: %w", id, err)
	}
	return ok, nil
}

// Ref names one invoice.
type Ref struct {
	ID     int64
	Number string
}

// Page returns up to limit invoices with an id above after, in id order.
func Page(ctx context.Context, tx pgx.Tx, after int64, limit int) ([]Ref, error) {
	rows, err := tx.Query(ctx, `SELECT id, number FROM invoices WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list invoices after %d: %w", after, err)
	}
	refs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Ref])
	if err != nil {
		return nil, fmt.Errorf("list invoices after %d: %w", after, err)
	}
	return refs, nil
}
