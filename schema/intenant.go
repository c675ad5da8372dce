package schema

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/invoicing/tenantworker/tenantctx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNoTenant is returned by InTenant when ctx carries no tenant. No
// connection is acquired and no query is sent: there is no default tenant.
var ErrNoTenant = errors.New("schema: no tenant in context")

// pinSQL pins search_path to one schema until the end of the transaction
// (the true third argument is SET LOCAL), inside a transaction that is
// already open (migrations). The quoted schema is a bind parameter.
const pinSQL = "SELECT pg_catalog.set_config('search_path', $1, true)"

// ownedPinSQL pins search_path to the schema quoted in $1 until the end of
// the transaction when the schema named $2 exists and records no owner
// other than the tenant whose owner comment is $3. Otherwise it pins the
// empty search_path, and every tenant table of the unit fails to resolve
// ("relation does not exist"): a schema of another owner is a new tenant
// given a deleted tenant's slug, whose tables the deleted tenant's late work
// must not reach; and a missing schema (dropped with its tenant, or whose
// creation has not committed yet) is not pinned by name, because a schema
// of that name created after the pin, for another owner, would be the one
// the unit's statements find. A schema that records no owner (made before
// owners were recorded, or by Migrate) is pinned. The lookup reads
// pg_namespace by name and pg_description by its key.
//
// A schema pinned by name is pinned after its existence lock is taken
// (shared): the lock is a call in the THEN branch, evaluated only then.
// It is a condition of a CASE (the function returns void, never null), not
// a subquery selecting from the function: a function in FROM is a function
// scan, which builds a tuplestore for its one row on every unit, about 1.5
// us of the server's CPU per unit (docs/performance.md, "2026-12-06,
// fifteenth: what a pinned unit costs PostgreSQL, statement by statement").
const ownedPinSQL = "SELECT pg_catalog.set_config('search_path', CASE WHEN EXISTS (" +
	"SELECT FROM pg_catalog.pg_namespace n WHERE n.nspname = $2 AND NOT EXISTS (" +
	"SELECT FROM pg_catalog.pg_description d WHERE d.objoid = n.oid " +
	"AND d.classoid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.objsubid = 0 " +
	"AND d.description LIKE '" + ownerPrefix + "%' AND d.description <> $3)" +
	") THEN CASE WHEN pg_catalog.pg_advisory_xact_lock_shared(" + existenceLockKey + ", pg_catalog.hashtext($2)) IS NULL THEN '' ELSE $1::text END" +
	" ELSE '' END, true)"

// existenceLockKey is existenceLockNamespace as SQL text: the first key of
// the lock a pin holds shared while it pins a schema by name (until the
// unit ends), and that Drop, DropOwned and the creation of a schema take
// exclusively. A schema pinned by name can then be neither dropped nor
// replaced by another owner's schema of the same name while the unit runs:
// search_path names a schema, and a schema of that name created after the
// pin would be the one the unit's statements find.
const existenceLockKey = "1952804453"

// existenceLockNamespace is the first key of the existence lock ("tene").
const existenceLockNamespace int32 = 0x74656e65

// ownerComment is the owner comment of t's schema (ownerPrefix and its id),
// as ownedPinSQL compares it.
func ownerComment(t tenantctx.Tenant) string { return ownerPrefix + t.ID }

// sqlLiteral quotes s as an SQL string literal for a connection with
// standard_conforming_strings on, as ConfigurePool's are.
func sqlLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// beginPinnedSQL begins a transaction with begin (beginSQL or
// beginReadCommittedSQL) and pins search_path to t's schema until its end
// (ownedPinSQL, the same as SET LOCAL), in one round trip of the simple
// protocol, which takes no bind parameters: quoted is the schema name,
// which passed tenantctx.ValidateSchema, quoted with
// pgx.Identifier.Sanitize, and the rest are literals.
func beginPinnedSQL(begin string, t tenantctx.Tenant, quoted string) string {
	r := strings.NewReplacer("$1", sqlLiteral(quoted), "$2", sqlLiteral(t.Schema), "$3", sqlLiteral(ownerComment(t)))
	return begin + "; " + r.Replace(ownedPinSQL)
}

// endSQL is an end-of-transaction round trip: one simple-protocol query
// string that commits (commit true) or rolls back and then proves the
// session clean (see ConfigurePool), with the full check when full (see
// verifySQL). The simple protocol is used whatever the pool's
// default_query_exec_mode, so this works behind PgBouncer in transaction
// mode too.
func endSQL(commit, full bool) string {
	if commit {
		return "COMMIT; " + verifyFor(full)
	}
	return "ROLLBACK; " + verifyFor(full)
}

// InTenant runs fn in a transaction pinned to the schema of the tenant in
// ctx (tenantctx.FromContext). Without a tenant it returns ErrNoTenant
// before touching the pool. It commits when fn returns nil and rolls back
// when fn returns an error or panics (the panic is re-raised after the
// rollback).
//
// Round trips: BEGIN and the pin (one batch that begins pgx's own
// transaction, pgx.Batch.BeginTx, so fn gets pgx's pgx.Tx with savepoints,
// CopyFrom and LargeObjects), fn's own queries, and COMMIT with the check
// (one batch; "ROLLBACK; verify" as one simple-protocol query when the
// unit rolls back). With pgx's statement cache (its default query exec
// mode) the pin and the check are prepared statements, planned once per
// connection; behind PgBouncer in transaction mode (exec or
// simple_protocol) each batch is still one round trip within one
// transaction.
//
// The tx given to fn is valid only until fn returns. Calling its Commit or
// Rollback inside fn ends the transaction early, and InTenant then reports
// pgx.ErrTxClosed, as pgx.BeginFunc does; whatever fn ran after that (on
// Conn, or a savepoint begun before) ran outside the transaction, so the
// release checks the connection in full (ConfigurePool) and destroys it
// unless it is clean. Statements prepared or cached on
// the connection stay safe across tenants: PostgreSQL re-plans a cached
// statement when search_path differs from the one it was planned under
// (name columns, never SELECT *: see docs/architecture.md).
//
// When ctx is cancelled or times out, the rollback runs on
// context.WithoutCancel(ctx) with a timeout; if it fails, pgx closes the
// connection and the pool destroys it.
func InTenant(ctx context.Context, pool *pgxpool.Pool, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return inTenant(ctx, pool, pgx.TxOptions{}, fn)
}

// InTenantReadCommitted is InTenant with its transaction at READ
// COMMITTED whatever the database's default_transaction_isolation, for a
// unit whose protocol is made for it: a row it locks, after waiting for
// another transaction, is read as that one committed it, and its commit
// is not refused for a conflict with another transaction. Under
// REPEATABLE READ or SERIALIZABLE the lock would fail instead (SQLSTATE
// 40001), and so could the commit, after the unit did something outside
// the database that the rollback cannot undo (a reminder's email, sent
// again by its retry).
func InTenantReadCommitted(ctx context.Context, pool *pgxpool.Pool, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return inTenant(ctx, pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, fn)
}

// inTenant is InTenant with its transaction begun with opts.
func inTenant(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, fn func(ctx context.Context, tx pgx.Tx) error) (err error) {
	t, quoted, pc, err := acquireTenant(ctx, pool)
	if err != nil {
		return err
	}
	defer pc.Release()
	conn := pc.Conn()

	// BEGIN and the pin travel in one round trip, as a batch that begins
	// pgx's own transaction (pgx.Batch.BeginTx): with pgx's statement
	// cache the pin is a prepared statement, which the server plans once
	// per connection instead of on every unit (about 250 us of its CPU
	// per unit on this project's test machine; docs/performance.md).
	inner, err := beginPinned(ctx, conn, t, quoted, opts)
	if err != nil {
		if !conn.PgConn().IsClosed() && conn.PgConn().TxStatus() != 'I' {
			// BEGIN ran but the pin failed: end the transaction.
			rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), verifyTimeout)
			if _, rbErr := conn.PgConn().Exec(rbCtx, "ROLLBACK").ReadAll(); rbErr != nil {
				_ = conn.Close(rbCtx)
			}
			cancel()
		}
		return fmt.Errorf("in tenant %s: begin and pin search_path: %w", t.ID, err)
	}
	tx := &pinnedTx{scannedTx: scannedTx{Tx: inner, full: new(bool)}, conn: conn}
	defer func() {
		if p := recover(); p != nil {
			if tx.closed {
				takeVerified(conn) // fn ended the transaction: see below
			} else {
				_ = tx.finish(ctx, false)
			}
			panic(p)
		}
	}()
	fnErr := fn(ctx, tx)
	if tx.closed {
		// fn ended the transaction itself (its Commit or Rollback), and that
		// end proved the session clean; but fn went on, and what it ran on
		// the connection since (through Conn, or a savepoint begun before)
		// ran outside any transaction, checked by nothing. The end's mark is
		// dropped: the release proves the connection clean (AfterRelease's
		// full check) or destroys it.
		takeVerified(conn)
		if fnErr != nil {
			return fnErr
		}
		return fmt.Errorf("in tenant %s: commit: %w", t.ID, pgx.ErrTxClosed)
	}
	if fnErr != nil {
		if rbErr := tx.finish(ctx, false); rbErr != nil && !errors.Is(rbErr, pgx.ErrTxClosed) {
			return errors.Join(fnErr, fmt.Errorf("in tenant %s: rollback: %w", t.ID, rbErr))
		}
		return fnErr
	}
	if err := tx.finish(ctx, true); err != nil {
		return fmt.Errorf("in tenant %s: commit: %w", t.ID, err)
	}
	return nil
}

// beginPinned begins a transaction with opts on conn and pins search_path
// to t's schema (ownedPinSQL, the schema quoted as quoted) in one round
// trip, and returns pgx's transaction.
func beginPinned(ctx context.Context, conn *pgx.Conn, t tenantctx.Tenant, quoted string, opts pgx.TxOptions) (pgx.Tx, error) {
	b := &pgx.Batch{}
	b.BeginTx(opts)
	b.Queue(ownedPinSQL, quoted, t.Schema, ownerComment(t))
	br := conn.SendBatch(ctx, b)
	inner := br.Tx()
	if err := br.Close(); err != nil {
		return nil, err
	}
	return inner, nil
}

// pinnedTx is the pgx.Tx given to InTenant's fn. It wraps pgx's own
// transaction but ends it itself, with the verification in the same round
// trip. Because the inner transaction is then never told it ended, every
// method that sends SQL checks closed first. LargeObjects and Conn are
// pgx's own and unguarded: like the tx itself, do not keep them past fn.
type pinnedTx struct {
	scannedTx
	conn   *pgx.Conn
	closed bool
}

// scannedTx is a pgx.Tx whose statements are read for what may leave
// session state (mayLeaveSessionState) before they are sent; full is set
// when one may, and the unit then ends with the full check. Savepoints
// (Begin) are scanned into the same flag; the raw connection (Conn) may
// run anything, so asking for it sets the flag.
type scannedTx struct {
	pgx.Tx
	full *bool
}

// note sets the flag when sql may leave session state.
func (t scannedTx) note(sql string) {
	if !*t.full && mayLeaveSessionState(sql) {
		*t.full = true
	}
}

// noteBatch notes every statement queued in b.
func (t scannedTx) noteBatch(b *pgx.Batch) {
	if b == nil {
		return
	}
	for _, q := range b.QueuedQueries {
		t.note(q.SQL)
	}
}

// Begin starts a savepoint (pseudo nested transaction), scanned like t.
func (t scannedTx) Begin(ctx context.Context) (pgx.Tx, error) {
	sp, err := t.Tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return scannedTx{Tx: sp, full: t.full}, nil
}

// Conn returns the underlying connection; what runs on it is not scanned,
// so the unit ends with the full check.
func (t scannedTx) Conn() *pgx.Conn {
	*t.full = true
	return t.Tx.Conn()
}

// SendBatch sends a batch in the transaction.
func (t scannedTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	t.noteBatch(b)
	return t.Tx.SendBatch(ctx, b)
}

// Prepare prepares a statement on the transaction's connection.
func (t scannedTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	t.note(sql)
	return t.Tx.Prepare(ctx, name, sql)
}

// Exec runs sql in the transaction.
func (t scannedTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	t.note(sql)
	return t.Tx.Exec(ctx, sql, args...)
}

// Query runs sql in the transaction.
func (t scannedTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	t.note(sql)
	return t.Tx.Query(ctx, sql, args...)
}

// QueryRow runs sql in the transaction.
func (t scannedTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	t.note(sql)
	return t.Tx.QueryRow(ctx, sql, args...)
}

// finish commits (commit true) or rolls back, verifies the session in the
// same round trip, and marks the connection verified on success. An
// unprovable connection is left to AfterRelease, which verifies it again or
// destroys it; one of a pool without ConfigurePool is closed here.
func (t *pinnedTx) finish(ctx context.Context, commit bool) error {
	if t.closed {
		return pgx.ErrTxClosed
	}
	t.closed = true
	pc := t.conn.PgConn()

	if commit && pc.TxStatus() != 'E' {
		// COMMIT and the check as a batch: with pgx's statement cache the
		// check is a prepared statement, planned once per connection.
		u := &batchUnit{conn: t.conn, full: *t.full}
		return u.commit(ctx, &pgx.Batch{})
	}
	// fn swallowed a failed statement (COMMIT would answer ROLLBACK), or
	// the unit rolls back: ROLLBACK and the check in one simple-protocol
	// query, which an aborted transaction accepts (a statement pgx would
	// prepare first is refused there), on a context that outlives ctx's
	// cancellation.
	rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), verifyTimeout)
	defer cancel()
	results, err := pc.Exec(rbCtx, endSQL(false, *t.full)).ReadAll()
	if err == nil {
		_, err = checkVerifyResult(results, loginOf(t.conn))
	} else if len(results) == 2 && results[0].Err == nil && results[0].CommandTag.String() == "ROLLBACK" {
		// Rolled back; the check failed, and the server session with it
		// when the check found it not clean (endDirtySQL).
		err = fmt.Errorf("%w: %w", errNotClean, err)
	}
	switch {
	case err == nil:
		// A no-op for a pool without ConfigurePool: no AfterRelease would
		// consume the mark, and none is needed.
		markVerified(t.conn)
	case errors.Is(err, errNotClean), pc.IsClosed() || pc.TxStatus() != 'I':
		// Rolled back, but fn left session state behind (a session-level
		// SET search_path, a temporary table), or the rollback did not
		// run: the connection must not be reused.
		_ = t.conn.Close(rbCtx)
		if errors.Is(err, errNotClean) {
			err = nil
		}
	}
	if err != nil {
		return err
	}
	if commit {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

// Begin starts a savepoint (pseudo nested transaction).
func (t *pinnedTx) Begin(ctx context.Context) (pgx.Tx, error) {
	if t.closed {
		return nil, pgx.ErrTxClosed
	}
	return t.scannedTx.Begin(ctx)
}

// Commit ends the InTenant transaction early (see InTenant).
func (t *pinnedTx) Commit(ctx context.Context) error { return t.finish(ctx, true) }

// Rollback ends the InTenant transaction early (see InTenant).
func (t *pinnedTx) Rollback(ctx context.Context) error { return t.finish(ctx, false) }

// CopyFrom runs COPY FROM in the transaction.
func (t *pinnedTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if t.closed {
		return 0, pgx.ErrTxClosed
	}
	return t.Tx.CopyFrom(ctx, table, columns, src)
}

// SendBatch sends a batch in the transaction.
func (t *pinnedTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if t.closed {
		return closedBatch{}
	}
	return t.scannedTx.SendBatch(ctx, b)
}

// Prepare prepares a statement on the transaction's connection.
func (t *pinnedTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if t.closed {
		return nil, pgx.ErrTxClosed
	}
	return t.scannedTx.Prepare(ctx, name, sql)
}

// Exec runs sql in the transaction.
func (t *pinnedTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if t.closed {
		return pgconn.CommandTag{}, pgx.ErrTxClosed
	}
	return t.scannedTx.Exec(ctx, sql, args...)
}

// Query runs sql in the transaction.
func (t *pinnedTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if t.closed {
		return closedRows{}, pgx.ErrTxClosed
	}
	return t.scannedTx.Query(ctx, sql, args...)
}

// QueryRow runs sql in the transaction.
func (t *pinnedTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if t.closed {
		return closedRows{}
	}
	return t.scannedTx.QueryRow(ctx, sql, args...)
}

// tenantFrom returns the tenant in ctx with its schema validated; op names
// the caller's step in the error. Without a tenant it returns ErrNoTenant.
func tenantFrom(ctx context.Context, op string) (tenantctx.Tenant, error) {
	t, ok := tenantctx.FromContext(ctx)
	if !ok {
		return t, ErrNoTenant
	}
	if err := tenantctx.ValidateSchema(t.Schema); err != nil {
		return t, fmt.Errorf("%s %s: %w", op, t.ID, err)
	}
	return t, nil
}

// acquireTenant is tenantFrom, the schema quoted for SQL, and a connection
// from pool: the start of every pinned unit of work. The caller releases
// the connection.
func acquireTenant(ctx context.Context, pool *pgxpool.Pool) (tenantctx.Tenant, string, *pgxpool.Conn, error) {
	t, err := tenantFrom(ctx, "in tenant")
	if err != nil {
		return t, "", nil, err
	}
	pc, err := pool.Acquire(ctx)
	if err != nil {
		return t, "", nil, fmt.Errorf("in tenant %s: acquire: %w", t.ID, err)
	}
	return t, pgx.Identifier{t.Schema}.Sanitize(), pc, nil
}
