package invoice

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/tenantctx"
)

// DocumentKeyID returns the invoice id of key when key is an invoice PDF's
// key exactly as DocumentKey writes it ("invoices/42.pdf"), and false for
// any other key.
func DocumentKeyID(key string) (int64, bool) {
	digits, ok := strings.CutPrefix(key, DocumentDir+"/")
	if !ok {
		return 0, false
	}
	if digits, ok = strings.CutSuffix(digits, ".pdf"); !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || id <= 0 || DocumentKey(id) != key {
		return 0, false
	}
	return id, true
}

// lockDocumentsSQL takes the lock every writer of invoice_documents
// takes (ROW EXCLUSIVE): it waits for a move's copy of the schema, whose
// EXCLUSIVE lock holds from the copy's start until the old schema is
// dropped, and holds off the next copy until the unit of work ends.
const lockDocumentsSQL = "LOCK TABLE invoice_documents IN ROW EXCLUSIVE MODE"

// lockRendersSQL tries the render lock (QueueLockRender) of each invoice
// id of $1 without waiting, and returns the ids it took: a render in
// progress holds its invoice's lock from before its load until its
// document's row commits.
const lockRendersSQL = `
SELECT c.id FROM pg_catalog.unnest($1::bigint[]) AS c(id)
 WHERE pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtextextended('invoice-pdf:' || $2::text || ':' || c.id::text, 0))`

// unreferencedSQL returns the ids of $1 with no invoice_documents row
// for their key ($2, the same position).
const unreferencedSQL = `
SELECT c.id FROM ROWS FROM (pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::text[])) AS c(id, k)
 WHERE NOT EXISTS (SELECT 1 FROM invoice_documents d WHERE d.invoice_id = c.id AND d.storage_key = c.k)`

// LockDocuments takes, in tx (a unit of work pinned to the tenant of
// schema schemaName), the locks under which the document store's files of
// invoices ids can be checked against invoice_documents and removed: the
// table's writers' lock (which waits for a move's copy of the schema and
// holds off the next) and the render lock of each id (QueueLockRender),
// tried without waiting. It returns the ids whose render lock it took: an
// id it did not take is being rendered now, and its document is the
// render's to record (or to remove). The locks are held until tx ends.
func LockDocuments(ctx context.Context, tx pgx.Tx, schemaName string, ids []int64) ([]int64, error) {
	if err := tenantctx.ValidateSchema(schemaName); err != nil {
		return nil, fmt.Errorf("lock documents: %w", err)
	}
	// Unreferenced relies on a snapshot per statement, taken after the
	// render locks: under REPEATABLE READ or SERIALIZABLE (a database's
	// default_transaction_isolation) the unit's snapshot would be older
	// than a row a render committed before its lock was taken.
	var isolation string
	if err := tx.QueryRow(ctx, "SELECT pg_catalog.current_setting('transaction_isolation')").Scan(&isolation); err != nil {
		return nil, fmt.Errorf("lock documents: read the isolation level: %w", err)
	}
	if isolation != "read committed" {
		return nil, fmt.Errorf("lock documents: the transaction runs at %.40q, and checking documents needs read committed (schema.InTenantReadCommitted)", isolation)
	}
	if _, err := tx.Exec(ctx, lockDocumentsSQL); err != nil {
		return nil, fmt.Errorf("lock invoice_documents: %w", err)
	}
	rows, err := tx.Query(ctx, lockRendersSQL, ids, schemaName)
	if err != nil {
		return nil, fmt.Errorf("lock renders: %w", err)
	}
	locked, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("lock renders: %w", err)
	}
	return locked, nil
}

// Unreferenced returns the ids of ids whose document (DocumentKey) no
// invoice_documents row records: the invoice was deleted, or the render
// that wrote the file ended before its row committed. Run it after
// LockDocuments took the ids' render locks, in a statement of its own: a
// render that held one of them has then committed its row, and this
// statement's snapshot sees it.
func Unreferenced(ctx context.Context, tx pgx.Tx, ids []int64) ([]int64, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = DocumentKey(id)
	}
	rows, err := tx.Query(ctx, unreferencedSQL, ids, keys)
	if err != nil {
		return nil, fmt.Errorf("find unreferenced documents: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("find unreferenced documents: %w", err)
	}
	return out, nil
}
