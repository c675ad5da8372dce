package invoice

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
	// InputsSHA256 identifies what the document was rendered from (see
	// pdf.InputsHash); empty for documents recorded before it was kept.
	InputsSHA256 string
	// FontPath is the renderer's font path (pdf.Result.FontPath); empty
	// for documents recorded before it was kept.
	FontPath string
}

// DocumentDir is the directory of the document store keys of invoice
// PDFs within a tenant (DocumentKey): a new tenant's document store has it
// prepared when its schema is created (storage.TenantPreparer).
const DocumentDir = "invoices"

// DocumentKey is the document store key of invoice id's PDF within its
// tenant.
func DocumentKey(id int64) string {
	return fmt.Sprintf(DocumentDir+"/%d.pdf", id)
}

// recordDocumentSQL records a stored PDF; a new render replaces the row.
// It inserts nothing for an invoice that does not exist (or no longer
// does): the row count tells. An invoice whose deletion commits while the
// statement waits for it (the deleting transaction was still open when the
// statement selected the invoice) fails its foreign key instead
// (foreign_key_violation): recorded reports both as ErrNotFound.
const recordDocumentSQL = `
INSERT INTO invoice_documents (invoice_id, storage_key, sha256, bytes, rendered_at, inputs_sha256, font_path)
SELECT i.id, $2, $3, $4, now(), NULLIF($5, ''), NULLIF($6, '')
  FROM invoices i WHERE i.id = $1
ON CONFLICT (invoice_id) DO UPDATE
   SET storage_key = EXCLUDED.storage_key, sha256 = EXCLUDED.sha256,
       bytes = EXCLUDED.bytes, rendered_at = EXCLUDED.rendered_at,
       inputs_sha256 = EXCLUDED.inputs_sha256, font_path = EXCLUDED.font_path`

// recordArgs are recordDocumentSQL's parameters.
func recordArgs(d Document) []any {
	return []any{d.InvoiceID, d.StorageKey, d.SHA256, d.Bytes, d.InputsSHA256, d.FontPath}
}

// RecordDocument records d as the invoice's current document. It returns
// an error wrapping ErrNotFound when the invoice does not exist, or was
// deleted while the statement ran.
func RecordDocument(ctx context.Context, tx pgx.Tx, d Document) error {
	tag, err := tx.Exec(ctx, recordDocumentSQL, recordArgs(d)...)
	return recorded(d.InvoiceID, tag, err)
}

// QueueRecordDocument queues RecordDocument's statement into b, so that it
// travels with the statements around it (see schema.InTenantBatch).
func QueueRecordDocument(b *pgx.Batch, d Document) {
	queueRecorded(b.Queue(recordDocumentSQL, recordArgs(d)...), d.InvoiceID)
}

// queueRecorded makes q's outcome recorded's: a statement error too, which
// QueuedQuery.Exec would return as is.
func queueRecorded(q *pgx.QueuedQuery, id int64) {
	q.Fn = func(br pgx.BatchResults) error {
		tag, err := br.Exec()
		return recorded(id, tag, err)
	}
}

// pgForeignKeyViolation is PostgreSQL's foreign_key_violation: the record
// of a document for an invoice deleted while the record waited.
const pgForeignKeyViolation = "23503"

// recorded is the outcome of recordDocumentSQL.
func recorded(id int64, tag pgconn.CommandTag, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgForeignKeyViolation {
		return fmt.Errorf("record document of invoice %d: %w: deleted meanwhile: %w", id, ErrNotFound, err)
	}
	if err != nil {
		return fmt.Errorf("record document of invoice %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("record document of invoice %d: %w", id, ErrNotFound)
	}
	return nil
}

// loadDocumentSQL reads an invoice's document with the invoice's number.
const loadDocumentSQL = `
SELECT i.number, d.storage_key, d.sha256, d.bytes, d.rendered_at,
       coalesce(d.inputs_sha256, ''), coalesce(d.font_path, '')
  FROM invoice_documents d
  JOIN invoices i ON i.id = d.invoice_id
 WHERE d.invoice_id = $1`

// LoadDocument returns invoice id's document, or an error wrapping
// ErrNoDocument when it has none.
func LoadDocument(ctx context.Context, tx pgx.Tx, id int64) (Document, error) {
	var d Document
	err := scanDocument(tx.QueryRow(ctx, loadDocumentSQL, id), id, &d)
	return d, err
}

// QueueLoadDocument queues LoadDocument's query into b (for
// schema.InTenantBatch): when the batch has run, *found says whether invoice
// id has a document, and dst holds it. An invoice without one is no error of
// the batch: the unit commits as usual and pgx keeps the statements it
// prepared (a failed batch makes it forget them, and the connection's next
// unit prepares them again, two round trips more).
func QueueLoadDocument(b *pgx.Batch, id int64, dst *Document, found *bool) {
	b.Queue(loadDocumentSQL, id).QueryRow(func(row pgx.Row) error {
		err := scanDocument(row, id, dst)
		*found = err == nil
		if errors.Is(err, ErrNoDocument) {
			return nil
		}
		return err
	})
}

// scanDocument scans one row of loadDocumentSQL into d.
func scanDocument(row pgx.Row, id int64, d *Document) error {
	*d = Document{InvoiceID: id}
	err := row.Scan(&d.Number, &d.StorageKey, &d.SHA256, &d.Bytes, &d.RenderedAt, &d.InputsSHA256, &d.FontPath)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("load document of invoice %d: %w", id, ErrNoDocument)
	}
	if err != nil {
		return fmt.Errorf("load document of invoice %d: %w", id, err)
	}
	return nil
}
