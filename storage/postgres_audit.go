package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// AppendAudit records e in tenancy.audit_log; a zero e.At is the database's
// now(). e.Detail, when set, must be a JSON value; it is stored as jsonb, so
// it reads back normalized (whitespace and key order may change).
func (p *Postgres) AppendAudit(ctx context.Context, e AuditEntry) error {
	if e.TenantID == "" || e.Action == "" {
		return fmt.Errorf("append audit %q for tenant %.64q: tenant id and action are required", e.Action, e.TenantID)
	}
	var at *time.Time
	if !e.At.IsZero() {
		at = &e.At
	}
	var detail *string
	if len(e.Detail) > 0 {
		if !json.Valid(e.Detail) {
			return fmt.Errorf("append audit %s for tenant %.64q: detail is not valid JSON", e.Action, e.TenantID)
		}
		s := string(e.Detail)
		detail = &s
	}
	if _, err := p.pool.Exec(ctx,
		`INSERT INTO tenancy.audit_log (at, tenant_id, actor, action, detail)
		 VALUES (coalesce($1::timestamptz, now()), $2, $3, $4, $5::jsonb)`,
		at, e.TenantID, e.Actor, e.Action, detail); err != nil {
		return fmt.Errorf("append audit %s for tenant %.64q: %w", e.Action, e.TenantID, err)
	}
	return nil
}

// AuditEntries returns the tenant's audit entries, oldest first (ties in
// insertion order). It works for deleted tenants too.
func (p *Postgres) AuditEntries(ctx context.Context, tenantID string) ([]AuditEntry, error) {
	rows, err := p.pool.Query(ctx,
		`SELECT at, tenant_id, actor, action, detail FROM tenancy.audit_log
		 WHERE tenant_id = $1 ORDER BY at, id`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("read audit of tenant %.64q: %w", tenantID, err)
	}
	entries, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEntry, error) {
		var e AuditEntry
		var detail []byte
		if err := r.Scan(&e.At, &e.TenantID, &e.Actor, &e.Action, &detail); err != nil {
			return AuditEntry{}, err
		}
		if detail != nil {
			e.Detail = json.RawMessage(detail)
		}
		return e, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read audit of tenant %.64q: %w", tenantID, err)
	}
	return entries, nil
}
