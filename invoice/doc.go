// Package invoice holds every SQL statement on a tenant's own tables
// (customers, invoices, line_items, invoice_documents, invoice_reminders):
// loading an invoice with its customer and lines, the rendered documents,
// the reminder protocol's rows, overdue marking, and the one fixture
// builder (Create) of the dev stack, the bench and the tests.
//
// Every function takes the transaction schema.InTenant hands out: its
// search_path is pinned to one tenant's schema, so the statements name
// their tables unqualified and can reach no other tenant. This package
// never pins, and never chooses a tenant. Columns are always named (no
// SELECT *: tenants sit at different schema versions) and values are bind
// parameters. Money is read and written as exact decimals, never float64.
package invoice
