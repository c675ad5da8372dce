package invoice

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/shopspring/decimal"
)

// ErrNotFound is returned for an invoice id the tenant's schema does not
// hold.
var ErrNotFound = errors.New("invoice not found")

// ErrInvalidData is returned for an invoice whose stored values the worker
// cannot use: a NaN amount, quantity or unit price (PostgreSQL's numeric
// takes 'NaN'). Every attempt would fail the same way until the app
// changes the row, so the worker archives such a task at once. Create
// also returns it for a value its column would not hold exactly.
var ErrInvalidData = errors.New("invoice holds values the worker cannot use")

// pgProgramLimitExceeded is PostgreSQL's program_limit_exceeded, the error
// of a value over its 1 GB limit (an array of an invoice's lines).
const pgProgramLimitExceeded = "54000"

// Invoice is one invoice as stored in a tenant schema, with its customer,
// its line items and its current document.
type Invoice struct {
	ID     int64
	Number string
	Status string
	// Currency is the ISO 4217 code in upper case, without the column's
	// padding, whatever case the app stored it in.
	Currency string
	// Amount is the total due as the app stores it (invoices.amount,
	// numeric(12,2)). It may differ from the sum of the lines; which one a
	// document shows is the worker's rule (docs/architecture.md, "Tenant
	// tables").
	Amount   decimal.Decimal
	IssuedAt time.Time
	// DueAt is the due date; zero when the invoice has none (such an
	// invoice is never overdue).
	DueAt    time.Time
	Notes    string
	Customer Customer
	// Lines are the line items in print order: by position, then id (rows
	// the app inserts have position 0 and print in insertion order). A
	// load with a line limit (QueueLoadForAtMost) leaves them out when
	// there are more than the limit.
	Lines []Line
	// LineCount is how many line items the invoice has, loaded or not.
	LineCount int
	// LineBytes is how many bytes its line items' descriptions add up
	// to, loaded or not.
	LineBytes int64
	// Document is the invoice's current rendered document; its StorageKey
	// is empty when there is none.
	Document Document
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

// loadSQL reads an invoice with its customer, its lines (as arrays in
// print order) and its current document in one statement. Money is read
// as text and parsed into exact decimals; the columns only the worker
// writes are read with their defaults, so rows the app inserted load too.
// The lines are counted and their descriptions' bytes summed first
// (octet_length reads a stored value's size without reading the value),
// and they are aggregated only when there are at most $2 of them and
// their descriptions add up to at most $3 bytes (NULL: any number), so
// that an invoice over a limit costs neither the database nor the worker
// its lines (an array over 1 GB, which lines of long descriptions reach,
// fails the statement; 300 MB of descriptions under the line limit took a
// worker 1.2 GB of heap).
const loadSQL = `
SELECT i.number, i.status, upper(btrim(i.currency) COLLATE "C"), i.amount::text, i.issued_at, i.due_date, i.notes,
       c.id, c.name, coalesce(c.company, ''), c.email, coalesce(c.address, ''),
       n.lines, n.bytes, l.descriptions, l.quantities, l.unit_prices,
       coalesce(d.storage_key, ''), coalesce(d.sha256, ''), coalesce(d.bytes, 0),
       d.rendered_at, coalesce(d.inputs_sha256, ''), coalesce(d.font_path, '')
  FROM invoices i
  JOIN customers c ON c.id = i.customer_id
  CROSS JOIN LATERAL (
        SELECT count(*) AS lines, coalesce(sum(octet_length(li.description)), 0) AS bytes
          FROM line_items li
         WHERE li.invoice_id = i.id) n
  LEFT JOIN LATERAL (
        SELECT array_agg(li.description ORDER BY li.position, li.id) AS descriptions,
               array_agg(li.quantity::text ORDER BY li.position, li.id) AS quantities,
               array_agg(li.unit_price::text ORDER BY li.position, li.id) AS unit_prices
          FROM line_items li
         WHERE li.invoice_id = i.id AND ($2::bigint IS NULL OR n.lines <= $2::bigint)
           AND ($3::bigint IS NULL OR n.bytes <= $3::bigint)) l ON true
  LEFT JOIN invoice_documents d ON d.invoice_id = i.id
 WHERE i.id = $1`

// Load reads invoice id with its customer, line items and current
// document, in one query. It returns an error wrapping ErrNotFound when
// there is no such invoice.
func Load(ctx context.Context, tx pgx.Tx, id int64) (Invoice, error) {
	var inv Invoice
	err := scanInvoice(tx.QueryRow(ctx, loadSQL, id, nil, nil), id, &inv)
	return inv, err
}

// QueueLoad queues Load's query into b: when the batch has run, dst holds
// the invoice, and the batch reports an error wrapping ErrNotFound when
// there is no such invoice. It lets the load travel in one round trip with
// the statements around it (see schema.InTenantBatch).
func QueueLoad(b *pgx.Batch, id int64, dst *Invoice) {
	b.Queue(loadSQL, id, nil, nil).QueryRow(func(row pgx.Row) error {
		return scanInvoice(row, id, dst)
	})
}

// QueueLoadAtMost is QueueLoad for an invoice of at most maxLines line
// items whose descriptions add up to at most maxLineBytes: one over
// either loads without its lines (dst.Lines is nil, dst.LineCount and
// dst.LineBytes say how many and how large they are), so that such an
// invoice costs neither the database nor the worker its lines.
func QueueLoadAtMost(b *pgx.Batch, id int64, maxLines int, maxLineBytes int64, dst *Invoice) {
	b.Queue(loadSQL, id, int64(maxLines), maxLineBytes).QueryRow(func(row pgx.Row) error {
		return scanInvoice(row, id, dst)
	})
}

// totalSQL is the total of invoice $1 as its document prints it
// (pdf.Subtotal, rounded): the lines' totals, each rounded half away from
// zero to the currency's minor units, summed; without lines, the stored
// amount, rounded; as remindersDueSQL computes it, the currency code as
// Load reads it. No row for a missing invoice.
const totalSQL = `
SELECT coalesce((SELECT sum(round(l.quantity * l.unit_price, m.places))
                   FROM line_items l WHERE l.invoice_id = i.id),
                round(i.amount, m.places))::text
  FROM invoices i
  CROSS JOIN LATERAL (SELECT minor_units(upper(btrim(i.currency) COLLATE "C")) AS places) m
 WHERE i.id = $1`

// QueueTotal queues the query of invoice id's total as its document prints
// it, computed by the database without loading the lines (for an invoice
// loaded without them, QueueLoadAtMost), into dst. A missing invoice
// leaves dst as it is; a total that is not a number (NaN) is
// ErrInvalidData, as Load's.
func QueueTotal(b *pgx.Batch, id int64, dst *decimal.Decimal) {
	b.Queue(totalSQL, id).Query(func(rows pgx.Rows) error {
		defer rows.Close()
		for rows.Next() {
			var text string
			if err := rows.Scan(&text); err != nil {
				return fmt.Errorf("total of invoice %d: %w", id, err)
			}
			v, err := decimal.NewFromString(text)
			if err != nil {
				return fmt.Errorf("total of invoice %d: %w: %.40q: %w", id, ErrInvalidData, text, err)
			}
			*dst = v
		}
		return rows.Err()
	})
}

// scanInvoice scans one row of loadSQL into inv.
func scanInvoice(row pgx.Row, id int64, inv *Invoice) error {
	*inv = Invoice{ID: id}
	c, d := &inv.Customer, &inv.Document
	var (
		amount               string
		lineCount, lineBytes int64
		issued, due          pgtype.Timestamptz
		renderedAt           *time.Time
		descs, qtys, prices  []string
	)
	err := row.Scan(
		&inv.Number, &inv.Status, &inv.Currency, &amount, &issued, &due, &inv.Notes,
		&c.ID, &c.Name, &c.Company, &c.Email, &c.Address,
		&lineCount, &lineBytes, &descs, &qtys, &prices,
		&d.StorageKey, &d.SHA256, &d.Bytes, &renderedAt, &d.InputsSHA256, &d.FontPath)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("load invoice %d: %w", id, ErrNotFound)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgProgramLimitExceeded {
		// Lines whose text adds up to more than PostgreSQL's 1 GB limit of
		// one value: no attempt will ever load them.
		return fmt.Errorf("load invoice %d: %w: its line items are too large to load: %w", id, ErrInvalidData, err)
	}
	if err != nil {
		return fmt.Errorf("load invoice %d: %w", id, err)
	}
	// char(3) pads, and the app may store the code in any case: the
	// document must round to the minor units the schema's minor_units
	// (upper(btrim(currency) COLLATE "C")) gave the stored amount, so the
	// code is normalized by the same upper() in SQL. In the "C" collation
	// it changes a-z only, whatever the database's collation (a Turkish
	// one would make "isk" "İSK"); other letters, such as a Turkish
	// dotless i, stay as they are, and the renderer refuses the code.
	if inv.Amount, err = decimal.NewFromString(amount); err != nil {
		return fmt.Errorf("load invoice %d: %w: amount %.40q: %w", id, ErrInvalidData, amount, err)
	}
	// timestamptz takes 'infinity' and '-infinity', which no time.Time
	// holds: like a NaN amount, such a date fails every attempt alike.
	if inv.IssuedAt, err = finiteTime(issued); err != nil {
		return fmt.Errorf("load invoice %d: %w: issue date %s", id, ErrInvalidData, err)
	}
	if inv.DueAt, err = finiteTime(due); err != nil {
		return fmt.Errorf("load invoice %d: %w: due date %s", id, ErrInvalidData, err)
	}
	if d.StorageKey != "" {
		d.InvoiceID, d.Number = id, inv.Number
		if renderedAt != nil {
			d.RenderedAt = *renderedAt
		}
	}
	inv.LineCount, inv.LineBytes = int(lineCount), lineBytes
	if len(qtys) != len(descs) || len(prices) != len(descs) {
		return fmt.Errorf("load line items of invoice %d: %d descriptions, %d quantities, %d prices", id, len(descs), len(qtys), len(prices))
	}
	if len(descs) > 0 {
		inv.Lines = make([]Line, len(descs))
	}
	for i := range descs {
		l := &inv.Lines[i]
		l.Description = descs[i]
		if l.Quantity, err = decimal.NewFromString(qtys[i]); err != nil {
			return fmt.Errorf("load line items of invoice %d: %w: quantity %.40q: %w", id, ErrInvalidData, qtys[i], err)
		}
		if l.UnitPrice, err = decimal.NewFromString(prices[i]); err != nil {
			return fmt.Errorf("load line items of invoice %d: %w: unit price %.40q: %w", id, ErrInvalidData, prices[i], err)
		}
	}
	return nil
}

// finiteTime returns t's time, the zero time when t is NULL, and an error
// naming the value when t is infinite.
func finiteTime(t pgtype.Timestamptz) (time.Time, error) {
	if !t.Valid {
		return time.Time{}, nil
	}
	if t.InfinityModifier != pgtype.Finite {
		return time.Time{}, fmt.Errorf("%q", t.InfinityModifier.String())
	}
	return t.Time, nil
}

// Exists reports whether invoice id exists.
func Exists(ctx context.Context, tx pgx.Tx, id int64) (bool, error) {
	var ok bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM invoices WHERE id = $1)`, id).Scan(&ok); err != nil {
		return false, fmt.Errorf("check invoice %d: %w", id, err)
	}
	return ok, nil
}

// QueueExists queues Exists's query into b (for schema.InTenantBatch):
// when the batch has run, *exists says whether invoice id exists.
func QueueExists(b *pgx.Batch, id int64, exists *bool) {
	b.Queue(`SELECT EXISTS (SELECT 1 FROM invoices WHERE id = $1)`, id).QueryRow(func(row pgx.Row) error {
		if err := row.Scan(exists); err != nil {
			return fmt.Errorf("check invoice %d: %w", id, err)
		}
		return nil
	})
}

// QueueMissing queues a query into b (for schema.InTenantBatch) that sets
// *missing to the ids of ids that name no invoice, in the order given (one
// statement for any number of ids).
func QueueMissing(b *pgx.Batch, ids []int64, missing *[]int64) {
	b.Queue(`SELECT id FROM invoices WHERE id = ANY($1)`, ids).Query(func(rows pgx.Rows) error {
		found, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return fmt.Errorf("check %d invoices: %w", len(ids), err)
		}
		have := make(map[int64]bool, len(found))
		for _, id := range found {
			have[id] = true
		}
		*missing = nil
		for _, id := range ids {
			if !have[id] {
				*missing = append(*missing, id)
			}
		}
		return nil
	})
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
