// Package storage owns the tenant catalog and the document blob store.
//
// The catalog (Catalog) holds tenants, their API keys and the audit log. The
// binaries run Postgres (the `tenancy` schema, the source of truth; its
// schema is brought up to date by MigrateCatalog, once at start) behind
// Cache (an in-process and Redis read-through/write-through layer in front
// of any Catalog). Tests and examples use the in-memory catalog of package
// storage/memstore; storage/storagetest holds the conformance suite every
// implementation passes.
//
// Documents (DocumentStore) are rendered PDFs, stored per tenant; FS keeps
// them in a directory tree with atomic writes.
//
// Errors: ErrNotFound for an unknown tenant, key or document; ErrConflict for
// a taken slug or id; ErrInvalidTransition for a forbidden status change.
package storage
