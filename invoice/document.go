package invoice

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoDocument is returned by LoadDocument for an invoice without a
// rendered document (or without the invoice).
var ErrNoDocument = errors.New("invoice has no rendered document")

// Document is an invoice's rendered PDF as invoice_documents records it.
type Document struct {
	InvoiceID int64
	// Number is the invoice's number (read by LoadDocument, ignored by
	// RecordDocument).
	Number string
	// StorageKey is the document's key in the document store.
	StorageKey string
	// SHA256 is the lowercase hex SHA-256 of the stored bytes.
	SHA256 string
	// Bytes is the stored size.
	Bytes int64
	// RenderedAt is when it was recorded (set by the database).
	RenderedAt time.Time
}

// DocumentKey is the document store key of invoice id's PDF within its
// tenant.
func DocumentKey(id int64) string {
	return fmt.Sprintf("invoices/%d.pdf", id)
}

// recordDocumentSQL records a stored PDF; a new render replaces the row.
const recordDocumentSQL = `
INSERT INTO invoice_documents (invoice_id, storage_key, sha256, bytes, rendered_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (invoice_id) DO UPDATE
   SET storage_key = EXCLUDED.storage_key, sha256 = EXCLUDED.sha256,
       bytes = EXCLUDED.bytes, rendered_at = EXCLUDED.rendered_at`

// RecordDocument records d as the invoice's current document.
func RecordDocument(ctx context.Context, tx pgx.Tx, d Document) error {
	if _, err := tx.Exec(ctx, recordDocumentSQL, d.InvoiceID, d.StorageKey, d.SHA256, d.Bytes); err != nil {
		return fmt.Errorf("record document of invoice %d: %w", d.InvoiceID, err)
	}
	return nil
}

// loadDocumentSQL reads an invoice's document with the invoice's number.
const loadDocumentSQL = `
SELECT i.number, d.storage_key, d.sha256, d.bytes, d.rendered_at
  FROM invoice_documents d
  JOIN invoices i ON i.id = d.invoice_id
 WHERE d.invoice_id = $1`

// LoadDocument returns invoice id's document, or an error wrapping
// ErrNoDocument when it has none.
func LoadDocument(ctx context.Context, tx pgx.Tx, id int64) (Document, error) {
	d := Document{InvoiceID: id}
	err := tx.QueryRow(ctx, loadDocumentSQL, id).Scan(&d.Number, &d.StorageKey, &d.SHA256, &d.Bytes, &d.RenderedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return d, fmt.Errorf("load document of invoice %d: %w", id, ErrNoDocument)
	}
	if err != nil {
		return d, fmt.Errorf("load document of invoice %d: %w", id, err)
	}
	return d, nil
}
