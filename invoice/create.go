package invoice

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// New is an invoice to create with Create: the rows the Invoicer app would
// write, for the dev stack's demo data, the bench and the tests.
type New struct {
	// ID is the invoice id; 0 takes the next one of the identity column.
	// Explicit ids let tests give every tenant the same ids.
	ID int64
	// Number is the invoice number; required and unique.
	Number string
	// Customer is billed: an existing customer when its ID is set,
	// otherwise the customer with its Email (unique), created from its
	// fields when there is none (an existing one is billed as it is).
	Customer Customer
	// Status is draft, sent, paid, overdue or cancelled; "" means draft.
	// The database checks it.
	Status string
	// Currency is an ISO 4217 code; "" means USD.
	Currency string
	// Amount is the total due (invoices.amount). Unset (not Valid), it is
	// the sum of the lines, each rounded half away from zero to the
	// currency's minor units: the total the document prints (rounded to
	// the column's 2 decimals for a currency with 3 or 4 minor units).
	Amount decimal.NullDecimal
	// IssuedAt is the issue date; zero means the database's now(). The app
	// does not write it.
	IssuedAt time.Time
	// DueAt is the due date; zero means none (NULL: never overdue).
	DueAt time.Time
	// Notes is free text.
	Notes string
	// Lines are the line items, in print order.
	Lines []Line
	// AppColumns inserts exactly the columns the Invoicer app's model
	// writes, and only those, as the app does: no customer address, no
	// issue date, no line position; a zero Status, Currency, Notes or line
	// Quantity (of every line) is left out of its INSERT, so the database
	// default applies. IssuedAt and Customer.Address must then be zero.
	AppColumns bool
}

// Defaults of New, as the Invoicer app's schema has them.
const (
	DefaultStatus   = "draft"
	DefaultCurrency = "USD"
)

// createCustomerSQL bills the customer with email $3: the existing row,
// or a new one (empty optional fields are NULL).
const createCustomerSQL = `
WITH new AS (
    INSERT INTO customers (name, company, email, address)
    VALUES ($1, NULLIF($2, ''), $3, NULLIF($4, ''))
    ON CONFLICT (email) DO NOTHING
    RETURNING id
)
SELECT id FROM new
UNION ALL
SELECT id FROM customers WHERE email = $3
LIMIT 1`

// createAppCustomerSQL is createCustomerSQL with the app's columns only.
const createAppCustomerSQL = `
WITH new AS (
    INSERT INTO customers (name, company, email)
    VALUES ($1, NULLIF($2, ''), $3)
    ON CONFLICT (email) DO NOTHING
    RETURNING id
)
SELECT id FROM new
UNION ALL
SELECT id FROM customers WHERE email = $3
LIMIT 1`

// createSQL inserts one invoice and its lines in one statement. The amount,
// unless given ($12), is the sum of the lines rounded as the document
// rounds them (minor_units is the tenant schema's copy of pdf.MinorUnits;
// it is given the code as Load reads it, upper-cased in the "C" collation:
// a schema's function before version 5 upper-cases in the database's, and
// a Turkish one made "isk" "İSK", 2 minor units instead of ISK's 0).
const createSQL = `
WITH l AS (
    SELECT d.description, d.quantity::numeric(12,3) AS quantity, d.unit_price::numeric(12,2) AS unit_price, d.position
      FROM unnest($9::text[], $10::text[], $11::text[]) WITH ORDINALITY
           AS d (description, quantity, unit_price, position)
), inv AS (
    INSERT INTO invoices (id, number, customer_id, status, currency, amount, issued_at, due_date, notes)
    VALUES (COALESCE($1, nextval(pg_catalog.pg_get_serial_sequence('invoices', 'id'))),
            $2, $3, $4, $5::text,
            COALESCE($12::numeric, (SELECT coalesce(round(sum(round(l.quantity * l.unit_price, minor_units(upper(btrim($5::text) COLLATE "C")))), 2), 0) FROM l)),
            COALESCE($6, now()), $7, $8)
    RETURNING id
), lines AS (
    INSERT INTO line_items (invoice_id, position, description, quantity, unit_price)
    SELECT inv.id, l.position, l.description, l.quantity, l.unit_price
      FROM inv, l
)
SELECT id FROM inv`

// CreateCustomer returns the id of the customer with c's email, creating
// it from c when there is none.
func CreateCustomer(ctx context.Context, tx pgx.Tx, c Customer) (int64, error) {
	var id int64
	if err := tx.QueryRow(ctx, createCustomerSQL, c.Name, c.Company, c.Email, c.Address).Scan(&id); err != nil {
		return 0, fmt.Errorf("create customer: %w", err)
	}
	return id, nil
}

// Create inserts invs with their lines (and the customers that have no id
// yet) and returns the invoice ids in order. It sends all customers in one
// round trip and all invoices in another.
//
// A unit price or an amount that numeric(12,2) cannot hold exactly (more
// than 2 decimals, or 10^10 and over), or a quantity that numeric(12,3)
// cannot (more than 3 decimals, or 10^9 and over), is refused with an
// error wrapping ErrInvalidData, before anything is written: the columns
// would round it silently (3 x 0.335 stored as 3 x 0.34) or refuse it
// with an error that names no value.
func Create(ctx context.Context, tx pgx.Tx, invs ...New) ([]int64, error) {
	for _, inv := range invs {
		if err := checkColumns(inv); err != nil {
			return nil, err
		}
	}
	customers := make([]int64, len(invs))
	var batch pgx.Batch
	for i, inv := range invs {
		customers[i] = inv.Customer.ID
		if customers[i] != 0 {
			continue
		}
		c := inv.Customer
		sql, args := createCustomerSQL, []any{c.Name, c.Company, c.Email, c.Address}
		if inv.AppColumns {
			if c.Address != "" {
				return nil, fmt.Errorf("create invoice %s: the app's customers have no address", inv.Number)
			}
			sql, args = createAppCustomerSQL, args[:3]
		}
		batch.Queue(sql, args...).QueryRow(func(row pgx.Row) error {
			if err := row.Scan(&customers[i]); err != nil {
				return fmt.Errorf("create customer of invoice %s: %w", inv.Number, err)
			}
			return nil
		})
	}
	if batch.Len() > 0 {
		if err := tx.SendBatch(ctx, &batch).Close(); err != nil {
			return nil, err
		}
	}

	ids := make([]int64, len(invs))
	batch = pgx.Batch{}
	for i, inv := range invs {
		var q *pgx.QueuedQuery
		if inv.AppColumns {
			if !inv.IssuedAt.IsZero() {
				return nil, fmt.Errorf("create invoice %s: the app writes no issue date", inv.Number)
			}
			sql, args := appInsert(inv, customers[i])
			q = batch.Queue(sql, args...)
		} else {
			q = batch.Queue(createSQL, createArgs(inv, customers[i])...)
		}
		q.QueryRow(func(row pgx.Row) error {
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

// checkColumns reports the first value of inv that its column would not
// hold exactly, wrapping ErrInvalidData.
func checkColumns(inv New) error {
	if inv.Amount.Valid && !fits(inv.Amount.Decimal, 12, 2) {
		return fmt.Errorf("create invoice %s: %w: amount %s does not fit numeric(12,2)", inv.Number, ErrInvalidData, inv.Amount.Decimal)
	}
	for i, l := range inv.Lines {
		if !fits(l.Quantity, 12, 3) {
			return fmt.Errorf("create invoice %s: %w: line %d: quantity %s does not fit numeric(12,3)", inv.Number, ErrInvalidData, i+1, l.Quantity)
		}
		if !fits(l.UnitPrice, 12, 2) {
			return fmt.Errorf("create invoice %s: %w: line %d: unit price %s does not fit numeric(12,2)", inv.Number, ErrInvalidData, i+1, l.UnitPrice)
		}
	}
	return nil
}

// fits reports whether numeric(precision, scale) holds d exactly.
func fits(d decimal.Decimal, precision, scale int32) bool {
	if !d.Equal(d.Truncate(scale)) {
		return false
	}
	return d.Abs().LessThan(decimal.New(1, precision-scale))
}

// lineArrays returns the lines' descriptions, quantities and unit prices
// as text arrays.
func lineArrays(lines []Line) (desc, qty, price []string) {
	desc = make([]string, len(lines))
	qty = make([]string, len(lines))
	price = make([]string, len(lines))
	for i, l := range lines {
		desc[i], qty[i], price[i] = l.Description, l.Quantity.String(), l.UnitPrice.String()
	}
	return desc, qty, price
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
	desc, qty, price := lineArrays(inv.Lines)
	return []any{id, inv.Number, customer, status, currency, timeOrNil(inv.IssuedAt), timeOrNil(inv.DueAt), inv.Notes,
		desc, qty, price, amountOrNil(inv.Amount)}
}

// appInsert builds the statement that inserts inv and its lines with the
// app's columns only (see New.AppColumns). Column names come from this
// function's fixed lists, never from input; values are bind parameters.
func appInsert(inv New, customer int64) (string, []any) {
	cols := []string{"customer_id", "number", "amount", "due_date"}
	vals := []string{"$1", "$2", "", "$3"}
	args := []any{customer, inv.Number, timeOrNil(inv.DueAt)}
	add := func(col string, v any) {
		args = append(args, v)
		cols = append(cols, col)
		vals = append(vals, "$"+strconv.Itoa(len(args)))
	}
	if inv.ID != 0 {
		add("id", inv.ID)
	}
	if inv.Status != "" {
		add("status", inv.Status)
	}
	if inv.Currency != "" {
		add("currency", inv.Currency)
		vals[len(vals)-1] += "::text"
	}
	if inv.Notes != "" {
		add("notes", inv.Notes)
	}
	desc, qty, price := lineArrays(inv.Lines)
	withQty := false
	for _, l := range inv.Lines {
		withQty = withQty || !l.Quantity.IsZero()
	}
	n := len(args)
	args = append(args, desc, qty, price, amountOrNil(inv.Amount))
	lines, currency := "$"+strconv.Itoa(n+1), "'"+DefaultCurrency+"'"
	for i, c := range cols {
		if c == "currency" {
			currency = vals[i]
		}
	}
	// The amount, unless given, as createSQL computes it (lines without a
	// quantity count once, as the column's default 1 makes them).
	vals[2] = fmt.Sprintf("COALESCE($%d::numeric, (SELECT coalesce(round(sum(round(coalesce(l.quantity, 1) * l.unit_price, minor_units(upper(btrim(%s) COLLATE \"C\")))), 2), 0) FROM l))", n+4, currency)
	lineCols, lineVals := "invoice_id, description, unit_price", "inv.id, l.description, l.unit_price"
	if withQty {
		lineCols, lineVals = "invoice_id, description, quantity, unit_price", "inv.id, l.description, coalesce(l.quantity, 1), l.unit_price"
	}
	sql := `
WITH l AS (
    SELECT d.description, NULLIF(d.quantity, '0')::numeric(12,3) AS quantity, d.unit_price::numeric(12,2) AS unit_price, d.ord
      FROM unnest(` + lines + `::text[], $` + strconv.Itoa(n+2) + `::text[], $` + strconv.Itoa(n+3) + `::text[]) WITH ORDINALITY
           AS d (description, quantity, unit_price, ord)
), inv AS (
    INSERT INTO invoices (` + strings.Join(cols, ", ") + `)
    VALUES (` + strings.Join(vals, ", ") + `)
    RETURNING id
), lines AS (
    INSERT INTO line_items (` + lineCols + `)
    SELECT ` + lineVals + ` FROM inv, l ORDER BY l.ord
)
SELECT id FROM inv`
	return sql, args
}

// amountOrNil is the amount parameter: nil (computed) when not Valid.
func amountOrNil(a decimal.NullDecimal) *string {
	if !a.Valid {
		return nil
	}
	s := a.Decimal.String()
	return &s
}

// timeOrNil is t, or nil (SQL NULL) for the zero time.
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
