package invoice

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/tenantctx"
)

// Statements written for one tenant schema.
//
// A statement prepared on a connection keeps its plan only while the
// search_path it runs under is the one it was planned under: PostgreSQL
// parses, analyses and plans a cached statement again whenever the
// search_path differs (plancache.c, RevalidateCachedQuery). The pin
// (schema.InTenantBatch) changes search_path with every tenant, so a
// statement whose text all tenants share is planned again on almost
// every execution: for the PDF load (four tables, a lateral aggregate)
// that was most of the query's server CPU (about 420 µs against 160 µs
// with a plan kept, 30 tenants on one connection).
//
// QueueLoadFor and QueueRecordDocumentFor therefore write the statement
// for the tenant's schema: the same text with every table qualified by
// the schema (validated by tenantctx.ValidateSchema, quoted with
// pgx.Identifier, I8). Each tenant's statement is its own entry in pgx's
// statement cache and always runs under the same pin, so its plan stays
// valid. The qualified names name the schema the pin names when the pin
// pinned the tenant's schema (both come from the same tenant), and find
// no row otherwise (see below); they also let pgx prepare a statement new to the connection before the pin
// is sent (an unqualified one fails there and costs schema.InTenantBatch
// two more round trips). A statement is prepared once per connection and
// tenant. With schema.Lanes (DB_POOL_LANES) a connection serves about 2/N
// of the tenants, so prepares stay rare; pgx's statement cache (512
// statements per connection by default, statement_cache_capacity in the
// database URL) evicts the least recently used once a connection serves
// more than about 250 tenants at once, and an evicted tenant's next task
// prepares again: one round trip more, and the planning a shared text pays
// on every task anyway. Behind PgBouncer (default_query_exec_mode=exec)
// nothing is prepared and each statement is planned as it runs.
//
// A tenant's texts are the shared texts cut where each table name starts
// (once, at start), joined with the tenant's quoted schema and a dot.
//
// A qualified name finds its table whatever the pin did, and the pin
// pins no schema for a unit whose tenant the schema does not belong to
// (a schema that records another owner: the slug's next tenant, after
// this one was deleted; or a missing one: see schema.InTenant, P17 in
// docs/architecture.md). So each text also requires, where it selects
// the invoice, that the transaction's search_path is the tenant's
// schema, as the pin set it: under any other pin the load finds no
// invoice and the record writes nothing (ErrNotFound), as the shared
// texts, which find no table, write nothing either. The condition is
// evaluated once per execution and keeps the plan.
type tenantSQL struct {
	load   string
	record string
}

// tableMark marks where a table name starts in the shared texts.
const tableMark = "\x00"

// pinMark marks where the condition on the pin goes in the shared texts
// (see tenantSQL): right after the selection of the invoice.
const pinMark = "\x01"

// invoiceWhere selects the invoice in both shared texts.
const invoiceWhere = "WHERE i.id = $1"

var (
	markTables = strings.NewReplacer(
		"FROM invoices ", "FROM "+tableMark+"invoices ",
		"JOIN customers ", "JOIN "+tableMark+"customers ",
		"FROM line_items ", "FROM "+tableMark+"line_items ",
		"JOIN invoice_documents ", "JOIN "+tableMark+"invoice_documents ",
		"INTO invoice_documents ", "INTO "+tableMark+"invoice_documents ",
		invoiceWhere, invoiceWhere+pinMark,
	)
	loadParts   = strings.Split(markTables.Replace(loadSQL), tableMark)
	recordParts = strings.Split(markTables.Replace(recordDocumentSQL), tableMark)
)

// pinnedCondition is the condition that the transaction's search_path is
// quoted, the tenant's quoted schema, exactly as the pin sets it.
func pinnedCondition(quoted string) string {
	return " AND pg_catalog.current_setting('search_path') = '" + strings.ReplaceAll(quoted, "'", "''") + "'"
}

// writeFor joins parts with the qualification q and puts cond where the
// pin's condition goes.
func writeFor(parts []string, q, cond string) string {
	return strings.ReplaceAll(strings.Join(parts, q), pinMark, cond)
}

// statementsFor returns the statements of schemaName, which must be a
// valid tenant schema.
func statementsFor(schemaName string) (*tenantSQL, error) {
	if err := tenantctx.ValidateSchema(schemaName); err != nil {
		return nil, err
	}
	quoted := pgx.Identifier{schemaName}.Sanitize()
	q, cond := quoted+".", pinnedCondition(quoted)
	return &tenantSQL{load: writeFor(loadParts, q, cond), record: writeFor(recordParts, q, cond)}, nil
}

// QueueLoadFor is QueueLoad with the statement written for schemaName, the
// schema the unit of work is pinned to (see tenantSQL): its plan is kept
// from one task of the tenant to the next on a connection. An invalid
// schema name queues nothing and is an error.
func QueueLoadFor(b *pgx.Batch, schemaName string, id int64, dst *Invoice) error {
	return queueLoadFor(b, schemaName, id, nil, nil, dst)
}

// QueueLoadForAtMost is QueueLoadFor for an invoice of at most maxLines
// line items whose descriptions add up to at most maxLineBytes: one over
// either loads without its lines (dst.Lines is nil, dst.LineCount and
// dst.LineBytes say how many and how large they are), so that an invoice
// a renderer refuses for its lines costs no more than their count and
// size.
func QueueLoadForAtMost(b *pgx.Batch, schemaName string, id int64, maxLines int, maxLineBytes int64, dst *Invoice) error {
	return queueLoadFor(b, schemaName, id, int64(maxLines), maxLineBytes, dst)
}

// queueLoadFor queues the load of invoice id written for schemaName, its
// lines when there are at most maxLines and their descriptions add up to
// at most maxLineBytes (nil: any number).
func queueLoadFor(b *pgx.Batch, schemaName string, id int64, maxLines, maxLineBytes any, dst *Invoice) error {
	s, err := statementsFor(schemaName)
	if err != nil {
		return fmt.Errorf("load invoice %d: %w", id, err)
	}
	b.Queue(s.load, id, maxLines, maxLineBytes).QueryRow(func(row pgx.Row) error {
		return scanInvoice(row, id, dst)
	})
	return nil
}

// renderLockSQL takes the transaction-scoped advisory lock of one
// invoice's render, keyed by one bigint (a key space apart from the
// tenant locks' two int4 keys).
const renderLockSQL = "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))"

// QueueLockRender queues the lock of invoice id's render in schemaName,
// held until the unit of work ends. Queued before the load, it serializes
// renders of one invoice: a render that waited for another loads the
// invoice after that one committed, so the last render to finish is the
// one that loaded the newest invoice (a follow-up render asked for while
// one was running, tasks.ReplaceFinishedFollowRunning).
func QueueLockRender(b *pgx.Batch, schemaName string, id int64) error {
	if err := tenantctx.ValidateSchema(schemaName); err != nil {
		return fmt.Errorf("lock render of invoice %d: %w", id, err)
	}
	b.Queue(renderLockSQL, "invoice-pdf:"+schemaName+":"+strconv.FormatInt(id, 10))
	return nil
}

// QueueRecordDocumentFor is QueueRecordDocument with the statement written
// for schemaName, the schema the unit of work is pinned to (see
// tenantSQL). An invalid schema name queues nothing and is an error.
func QueueRecordDocumentFor(b *pgx.Batch, schemaName string, d Document) error {
	s, err := statementsFor(schemaName)
	if err != nil {
		return fmt.Errorf("record document of invoice %d: %w", d.InvoiceID, err)
	}
	queueRecorded(b.Queue(s.record, recordArgs(d)...), d.InvoiceID)
	return nil
}
