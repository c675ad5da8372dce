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
	at, detail, err := auditArgs(e)
	if err != nil {
		return err
	}
	if _, err := p.pool.Exec(ctx, insertAuditSQL, at, e.TenantID, e.Actor, e.Action, detail); err != nil {
		return fmt.Errorf("append audit %s for tenant %.64q: %w", e.Action, e.TenantID, err)
	}
	return nil
}

// AppendAuditOnce records e unless the tenant's audit log already holds an
// entry of e.Action, and reports whether it did. Concurrent calls for one
// tenant and action append one entry between them: each takes a
// transaction-scoped advisory lock on the pair, then checks and inserts in
// statements that see what the one before it committed. The transaction
// runs at read committed whatever the catalog database's
// default_transaction_isolation: at repeatable read or serializable the
// check read the snapshot taken by the lock's statement, before its wait,
// so the entry the call it waited for committed was not seen and was
// written again (or, at serializable, the append was refused with SQLSTATE
// 40001).
func (p *Postgres) AppendAuditOnce(ctx context.Context, e AuditEntry) (bool, error) {
	at, detail, err := auditArgs(e)
	if err != nil {
		return false, err
	}
	var appended bool
	err = pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, auditLockSQL, auditLockKey(e.TenantID, e.Action)); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, insertAuditSQL+
			` WHERE NOT EXISTS (SELECT 1 FROM tenancy.audit_log WHERE tenant_id = $2 AND action = $4)`,
			at, e.TenantID, e.Actor, e.Action, detail)
		appended = tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("append audit %s once for tenant %.64q: %w", e.Action, e.TenantID, err)
	}
	return appended, nil
}

// AppendAuditUnlessLatest records e unless, of the tenant's entries of
// e.Action whose detail contains among (jsonb @>; all of them when among
// is empty), the latest has a detail containing match, and reports
// whether it did. It takes AppendAuditOnce's advisory lock on the tenant
// and action, and the entry's time is the clock's when it is inserted
// (clock_timestamp(), not the transaction's start), so that the entry
// appended last under the lock is the latest one for the next call. It
// runs at read committed, as AppendAuditOnce does.
func (p *Postgres) AppendAuditUnlessLatest(ctx context.Context, e AuditEntry, among, match json.RawMessage) (bool, error) {
	at, detail, err := auditArgs(e)
	if err != nil {
		return false, err
	}
	var amongArg *string
	if len(among) > 0 {
		a := string(among)
		amongArg = &a
	}
	for _, m := range []json.RawMessage{among, match} {
		if len(m) > 0 && !json.Valid(m) {
			return false, fmt.Errorf("append audit %s for tenant %.64q: condition is not valid JSON", e.Action, e.TenantID)
		}
	}
	if len(match) == 0 {
		match = json.RawMessage("{}")
	}
	var appended bool
	err = pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, auditLockSQL, auditLockKey(e.TenantID, e.Action)); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO tenancy.audit_log (at, tenant_id, actor, action, detail)
			SELECT coalesce($1::timestamptz, clock_timestamp()), $2, $3, $4, $5::jsonb
			 WHERE NOT EXISTS (
				SELECT 1 FROM (
					SELECT l.detail FROM tenancy.audit_log AS l
					 WHERE l.tenant_id = $2 AND l.action = $4 AND ($6::jsonb IS NULL OR l.detail @> $6::jsonb)
					 ORDER BY l.at DESC, l.id DESC LIMIT 1) AS latest
				 WHERE latest.detail @> $7::jsonb)`,
			at, e.TenantID, e.Actor, e.Action, detail, amongArg, string(match))
		appended = tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("append audit %s unless recorded for tenant %.64q: %w", e.Action, e.TenantID, err)
	}
	return appended, nil
}

// auditLockSQL takes the transaction-scoped advisory lock of
// auditLockKey's key.
const auditLockSQL = `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`

// auditLockKey is the key of the advisory lock AppendAuditOnce and
// AppendAuditUnlessLatest take on a tenant's action.
func auditLockKey(tenantID, action string) string {
	return "tenancy.audit_log:" + tenantID + ":" + action
}

// insertAuditSQL inserts one entry ($1 at or NULL for now, $2 tenant id, $3
// actor, $4 action, $5 detail or NULL); a WHERE clause may follow.
const insertAuditSQL = `INSERT INTO tenancy.audit_log (at, tenant_id, actor, action, detail)
	 SELECT coalesce($1::timestamptz, now()), $2, $3, $4, $5::jsonb`

// auditArgs checks e and returns its time and detail as query arguments
// (nil for the database's now() and for no detail).
func auditArgs(e AuditEntry) (*time.Time, *string, error) {
	if e.TenantID == "" || e.Action == "" {
		return nil, nil, fmt.Errorf("append audit %q for tenant %.64q: tenant id and action are required", e.Action, e.TenantID)
	}
	var at *time.Time
	if !e.At.IsZero() {
		at = &e.At
	}
	var detail *string
	if len(e.Detail) > 0 {
		if !json.Valid(e.Detail) {
			return nil, nil, fmt.Errorf("append audit %s for tenant %.64q: detail is not valid JSON", e.Action, e.TenantID)
		}
		s := string(e.Detail)
		detail = &s
	}
	return at, detail, nil
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
