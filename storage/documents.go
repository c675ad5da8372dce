package storage

import (
	"context"
	"io"
)

// DocumentInfo describes a stored document.
type DocumentInfo struct {
	// Key is the document's key inside its tenant, e.g. "invoices/42.pdf".
	Key string `json:"storage_key"`
	// SHA256 is the lowercase hex SHA-256 of the content.
	SHA256 string `json:"sha256"`
	// Bytes is the content length.
	Bytes int64 `json:"bytes"`
}

// DocumentStore keeps rendered documents per tenant. Keys are relative,
// slash-separated paths confined to the tenant: "..", absolute paths, NUL
// and backslashes are rejected.
type DocumentStore interface {
	// Put stores the content of r under key, atomically replacing any
	// previous version, and returns its size and SHA-256.
	Put(ctx context.Context, tenantID, key string, r io.Reader) (DocumentInfo, error)
	// Open returns the document's content; ErrNotFound when absent. The
	// caller closes it.
	Open(ctx context.Context, tenantID, key string) (io.ReadCloser, DocumentInfo, error)
	// DeleteTenant removes every document of the tenant; it is not an
	// error when there are none.
	DeleteTenant(ctx context.Context, tenantID string) error
}

// TenantPreparer is implemented by a DocumentStore that can make a new
// tenant's storage ready before its first document, so that the first
// Put into each of its directories does not pay for creating them (FS: a
// directory made durable costs fsyncs of it and its parent).
type TenantPreparer interface {
	// PrepareTenant makes ready what the tenant's documents with keys
	// under dirs (key prefixes such as "invoices") need. It is idempotent,
	// leaves existing documents alone and validates tenantID and dirs as
	// Put validates its arguments.
	PrepareTenant(ctx context.Context, tenantID string, dirs ...string) error
}
