package invoice

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// New is an invoice to create with Create: the rows the seed app would
// write, for the dev stack's demo data, the bench and the tests.
type New struct {
	// ID is the invoice id; 0 takes the next one of the identity column.
	// Explicit ids let tests give every tenant the same ids.
	ID int64
	// Number is the invoice number; required and unique.
	Number string
	// Customer is billed: an existing customer when its ID is set,
	// otherwise a new customers row made from its fields.
	Customer Customer
	// Status is draft, sent, paid, overdue or cancelled; "" means draft.
	// The database checks it.
	Status string
	// Currency is an ISO 4217 code; "" means USD.
	Currency string
	// IssuedAt and DueAt are the dates; zero means the database's now().
	IssuedAt, DueAt time.Time
	// Notes is free text.
	Notes string
	// Lines are the line items, in print order.
	Lines []Line
}

// Defaults of New, as the seed app's schema has them.
const (
	DefaultStatus   = "draft"
	DefaultCurrency = "USD"
)

// createCustomerSQL inserts a customer; empty optional fields are NULL.
const createCustomerSQL = `
INSERT INTO customers (name, company, email, address)
VALUES ($1, NULLIF($2, ''), $3, NULLIF($4, ''))
RETURNING id`

// createSQL inserts one invoice and its lines in one statement.
const createSQL = `
WITH inv AS (
    INSERT INTO invoices (id, number, customer_id, status, currency, issued_at, due_date, notes)
    VALUES (COALESCE($1, nextval(pg_catalog.pg_get_serial_sequence('invoices', 'id'))),
            $2, $3, $4, $5, COALESCE($6, now()), COALESCE($7, now()), $8)
    RETURNING id
), lines AS (
    INSERT INTO line_items (invoice_id, position, description, quantity, unit_price)
    SELECT inv.id, l.position, l.description, l.quantity::numeric, l.unit_price::numeric
      FROM inv, unnest($9::text[], $10::text[], $11::text[]) WITH ORDINALITY
           AS l (description, quantity, unit_price, position)
)
SELECT id FROM inv`

// CreateCustomer inserts c and returns its id.
func CreateCustomer(ctx context.Context, tx pgx.Tx, c Customer) (int64, error) {
	var id int64
	if err := tx.QueryRow(ctx, createCustomerSQL, c.Name, c.Company, c.Email, c.Address).Scan(&id); err != nil {
		return 0, fmt.Errorf("create customer %s: %w", c.Email, err)
	}
	return id, nil
}

// Create inserts invs with their lines (and the customers that have no id
// yet) and returns the invoice ids in order. It sends all customers in one
// round trip and all invoices in another.
func Create(ctx context.Context, tx pgx.Tx, invs ...New) ([]int64, error) {
	customers := make([]int64, len(invs))
	var batch pgx.Batch
	for i, inv := range invs {
		customers[i] = inv.Customer.ID
		if customers[i] == 0 {
			c := inv.Customer
			batch.Queue(createCustomerSQL, c.Name, c.Company, c.Email, c.Address).QueryRow(func(row pgx.Row) error {
				if err := row.Scan(&customers[i]); err != nil {
					return fmt.Errorf("create customer %s: %w", c.Email, err)
				}
				return nil
			})
		}
	}
	if batch.Len() > 0 {
		if err := tx.SendBatch(ctx, &batch).Close(); err != nil {
			return nil, err
		}
	}

	ids := make([]int64, len(invs))
	batch = pgx.Batch{}
	for i, inv := range invs {
		batch.Queue(createSQL, createArgs(inv, customers[i])...).QueryRow(func(row pgx.Row) error {
			if err := row.Scan(&ids[i]); err != nil {
				return fmt.Errorf("create invoice %s: %w", inv.Number, err)
			}
			return nil
		})
	}
	if err := tx.SendBatch(ctx, &batch).Close(); err != nil {
		return nil, err
	}
	return ids, nil
}

// createArgs are createSQL's parameters for inv billed to customer.
func createArgs(inv New, customer int64) []any {
	var id *int64
	if inv.ID != 0 {
		id = &inv.ID
	}
	status, currency := inv.Status, inv.Currency
	if status == "" {
		status = DefaultStatus
	}
	if currency == "" {
		currency = DefaultCurrency
	}
	desc := make([]string, len(inv.Lines))
	qty := make([]string, len(inv.Lines))
	price := make([]string, len(inv.Lines))
	for i, l := range inv.Lines {
		desc[i], qty[i], price[i] = l.Description, l.Quantity.String(), l.UnitPrice.String()
	}
	return []any{id, inv.Number, customer, status, currency, timeOrNil(inv.IssuedAt), timeOrNil(inv.DueAt), inv.Notes, desc, qty, price}
}

// timeOrNil is t, or nil (SQL NULL) for the zero time.
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
