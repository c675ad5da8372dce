// Package storage owns the tenant catalog and the document blob store.
//
// The catalog (Catalog) holds tenants, their API keys and the audit log. It
// has three implementations picked by configuration: Postgres (the
// `tenancy` schema, the source of truth), Cache (an in-process and Redis
// read-through/write-through layer in front of any Catalog), and Memory (for
// unit tests and examples).
//
// Documents (DocumentStore) are rendered PDFs, stored per tenant; FS keeps
// them in a directory tree with atomic writes.
//
// Errors: ErrNotFound for an unknown tenant, key or document; ErrConflict for
// a taken slug or id; ErrInvalidTransition for a forbidden status change.
package storage
