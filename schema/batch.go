package schema

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/invoicing/tenantworker/tenantctx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// InTenantBatch runs the statements queued in b as one unit of work
// pinned to the schema of the tenant in ctx, in one round trip: BEGIN, the
// pin (set_config('search_path', $1, true), the quoted schema a bind
// parameter), b's statements, COMMIT and the clean-connection check are
// written as one pipeline that ends with a single Sync, and their results
// read back in order, running b's callbacks (pgx.QueuedQuery.QueryRow,
// Query, Exec). It is InTenant for work whose statements are known before
// the first result comes back (a load, an upsert), and keeps InTenant's
// guarantees (docs/architecture.md, I1-I3):
//
//   - without a tenant it returns ErrNoTenant before touching the pool;
//   - the pin is SET LOCAL inside an explicit transaction, never a session
//     setting, and everything up to the Sync runs on one server
//     connection, also behind PgBouncer in transaction mode (which hands a
//     server connection back only at a ReadyForQuery outside a
//     transaction): with default_query_exec_mode=exec, pgx sends the
//     statements unnamed, as PgBouncer needs;
//   - the check (search_path empty again, no temporary schema) runs after
//     COMMIT on the same connection, and a connection it proves clean is
//     handed back without AfterRelease's query, exactly as InTenant's
//     "COMMIT; verify" does;
//   - when a statement fails, PostgreSQL skips the rest up to the Sync
//     (COMMIT included) and the transaction is still open: it is rolled
//     back with the check in one more round trip ("ROLLBACK; verify") on
//     a context that outlives ctx's cancellation, and a connection that
//     cannot be proven clean is closed.
//
// The set-up statements queued at the start of b by QueueLockShared and
// QueueGenericPlans travel as further columns of the pin's statement
// (pinStatement): the same effects, one statement instead of three.
//
// COMMIT is sent before the first result comes back, so the caller's
// deadline has to reach the server: with a deadline on ctx, the pin's
// statement also sets statement_timeout (SET LOCAL) to the time left when
// the unit begins, and the server cancels any statement of the unit that
// runs longer, which rolls the unit back. What no client can know is the
// outcome of a unit whose statements all finished on the server after ctx
// ended but before the server learned of it: it may have committed, and
// the caller gets ctx's error. Work retried after such an error must be
// idempotent, as every task handler is.
//
// Because every statement is sent before any result is read, a callback
// that returns an error cannot stop what the server does: the statements
// after it still run and commit. Use callbacks to read, and let a
// statement fail (a constraint, a check in SQL) to stop a write. The error
// returned is the first one: a statement's, a callback's or the commit's.
// After any error pgx forgets the statements it prepared for the batch, so
// the next unit on that connection prepares them again (see begin).
// b must not be used again.
func InTenantBatch(ctx context.Context, pool *pgxpool.Pool, b *pgx.Batch) error {
	return InTenantBatches(ctx, pool, b, nil)
}

// InTenantBatches runs a unit of work pinned like InTenantBatch in two
// round trips, with work of the caller in between, the transaction open:
// the first carries BEGIN, the pin and first's statements; then next runs
// (it sends nothing itself) and returns the statements that end the unit,
// which travel with COMMIT and the check (a nil batch: COMMIT and the check
// alone). A read, work outside the database, then a write, in one
// transaction and two round trips: the tenant's shared lock
// (QueueLockShared) taken in first is held until the write commits. With a
// deadline on ctx, the pin also sets idle_in_transaction_session_timeout
// to the time left (SET LOCAL), so that a server's shorter one does not
// end the transaction while next runs; and when the first round trip and
// next took longer than 10 ms, the second round trip starts by setting
// statement_timeout again, to the time left.
//
// An error of first's statements or callbacks rolls back without calling
// next. An error from next (or a panic, re-raised after) rolls back. The
// rollback and the check then cost one more round trip, as in
// InTenantBatch. A nil next is InTenantBatch.
func InTenantBatches(ctx context.Context, pool *pgxpool.Pool, first *pgx.Batch, next func(ctx context.Context) (*pgx.Batch, error)) (err error) {
	return inTenantBatches(ctx, pool, beginSQL, first, next)
}

// InTenantBatchesReadCommitted is InTenantBatches with its transaction at
// READ COMMITTED whatever the database's default_transaction_isolation,
// for a unit whose protocol is made for it (see InTenantReadCommitted): a
// statement of first that runs after a lock of first waited for another
// transaction reads what that one committed, and the write that ends the
// unit is not refused for a conflict with it. Under REPEATABLE READ or
// SERIALIZABLE the unit's snapshot would be taken by the pin's statement,
// before the wait, and the write refused (SQLSTATE 40001) after next did
// its work outside the database (a render's file, written over another's).
func InTenantBatchesReadCommitted(ctx context.Context, pool *pgxpool.Pool, first *pgx.Batch, next func(ctx context.Context) (*pgx.Batch, error)) error {
	return inTenantBatches(ctx, pool, beginReadCommittedSQL, first, next)
}

// inTenantBatches is InTenantBatches with its transaction opened by begin
// (beginSQL or beginReadCommittedSQL).
func inTenantBatches(ctx context.Context, pool *pgxpool.Pool, begin string, first *pgx.Batch, next func(ctx context.Context) (*pgx.Batch, error)) (err error) {
	t, quoted, pc, err := acquireTenant(ctx, pool)
	if err != nil {
		return err
	}
	defer pc.Release()
	u := &batchUnit{conn: pc.Conn(), beginSQL: begin}
	u.note(first)
	defer func() {
		if p := recover(); p != nil {
			u.rollback(ctx)
			panic(p)
		}
	}()

	if next == nil {
		return u.begin(ctx, t, quoted, first, true)
	}
	if err := u.begin(ctx, t, quoted, first, false); err != nil {
		return err
	}
	last, err := next(ctx)
	if err != nil {
		u.rollback(ctx)
		return err
	}
	b := &pgx.Batch{}
	if u.timed && time.Since(u.timedAt) > retimeAfter {
		// The first round trip and next took some of the time: the second
		// round trip's statements get only what is left.
		if timeout := deadlineTimeout(ctx); timeout > 0 {
			b.Queue(statementTimeoutSQL, strconv.FormatInt(timeoutMillis(timeout), 10)).Exec(func(pgconn.CommandTag) error { return nil })
		}
	}
	if last != nil {
		u.note(last)
		b.QueuedQueries = append(b.QueuedQueries, last.QueuedQueries...)
	}
	return u.end(ctx, t.ID, b)
}

// retimeAfter is how long the first round trip of InTenantBatches and next
// may take before the second round trip sets statement_timeout again: the
// first's setting lets a statement outlive the deadline by the time they
// took, and one more statement for less than this is not worth its cost.
const retimeAfter = 10 * time.Millisecond

// statementTimeoutSQL sets statement_timeout (milliseconds, $1) for the
// rest of the transaction.
const statementTimeoutSQL = "SELECT pg_catalog.set_config('statement_timeout', $1, true)"

// begin sends BEGIN, the pin and first's statements, and with end also
// COMMIT and the check, in one round trip.
//
// pgx prepares (or describes) a statement new to the connection in a round
// trip of its own before it sends the batch (default_query_exec_mode
// cache_statement, cache_describe, describe_exec; never in exec or
// simple_protocol). That round trip comes before BEGIN and the pin, so an
// unqualified name in it does not resolve ("relation does not exist"):
// pgx then reports the error before sending a single statement, and the
// session is still idle. begin then opens and pins the transaction in a
// round trip of its own ("BEGIN; SET LOCAL search_path", as InTenant does)
// and sends the statements again, now prepared inside the pin. That costs
// two round trips more, once per statement and connection (and after pgx
// evicted or invalidated a cached statement). A statement prepared outside
// the pin can only have resolved names in pg_catalog, which resolve the
// same inside it, and PostgreSQL re-plans a cached statement when
// search_path changes, so it never reads another schema.
func (u *batchUnit) begin(ctx context.Context, t tenantctx.Tenant, quoted string, first *pgx.Batch, end bool) error {
	tenantID := t.ID
	b := &pgx.Batch{}
	b.Queue(u.beginSQL)
	timeout := deadlineTimeout(ctx)
	if u.timed = timeout > 0; u.timed {
		u.timedAt = time.Now()
	}
	pin, args, folded := pinStatement(t, quoted, first, timeout, !end)
	b.Queue(pin, args...)
	if first != nil {
		queueCopies(b, first.QueuedQueries[folded:])
	}
	var err error
	if end {
		err = u.end(ctx, tenantID, b)
	} else if err = u.conn.SendBatch(ctx, b).Close(); err != nil {
		err = fmt.Errorf("in tenant %s: %w", tenantID, err)
	}
	pc := u.conn.PgConn()
	if err == nil || !errors.As(err, new(pgx.ErrPreprocessingBatch)) || pc.IsClosed() || pc.TxStatus() != 'I' {
		if err != nil && !end {
			u.rollback(ctx)
		}
		return causedByDone(ctx, err)
	}
	begin := beginPinnedSQL(u.beginSQL, t, quoted)
	if timeout > 0 {
		ms := strconv.FormatInt(timeoutMillis(timeout), 10)
		begin += "; SET LOCAL statement_timeout = " + ms
		if !end {
			begin += "; SET LOCAL idle_in_transaction_session_timeout = " + ms
		}
	}
	if _, err := pc.Exec(ctx, begin).ReadAll(); err != nil {
		u.rollback(ctx)
		return fmt.Errorf("in tenant %s: begin and pin search_path: %w", tenantID, err)
	}
	b = &pgx.Batch{}
	if first != nil {
		queueCopies(b, first.QueuedQueries)
	}
	if end {
		return u.end(ctx, tenantID, b)
	}
	if err := u.conn.SendBatch(ctx, b).Close(); err != nil {
		u.rollback(ctx)
		return fmt.Errorf("in tenant %s: %w", tenantID, err)
	}
	return nil
}

// causedByDone returns err, marked with ctx's error when ctx is done and
// err does not say so already. A deadline that passes during pgx's prepare
// round trip closes the connection while the server's answer to the
// prepare (outside the pin: "relation ... does not exist") is the error pgx
// reports; the unit failed because its time was up, and callers that check
// errors.Is(err, context.DeadlineExceeded) must see that.
func causedByDone(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil || errors.Is(err, ctx.Err()) {
		return err
	}
	return fmt.Errorf("%w: %w", ctx.Err(), err)
}

// pinStatement returns the statement that pins search_path to quoted,
// with its arguments, and the number of first's leading statements folded
// into it.
//
// With a timeout (the time left before the caller's deadline, rounded up
// to a millisecond), the statement also sets statement_timeout for the
// rest of the transaction (SET LOCAL), and with idle (a unit of two round
// trips, idle between them) idle_in_transaction_session_timeout to the
// same time: a server's shorter one would end the unit under its caller's
// work (a render), and the unit never outlives the deadline anyway. The unit's COMMIT travels in the
// same pipeline as its statements, so a server that never heard of the
// caller's deadline would run a long statement to its end and commit
// after the caller gave up: pgx's cancel request on the deadline is
// ignored by a backend that is between two messages of the pipeline. With
// the setting, the server itself cancels a statement that outlives the
// deadline, and the transaction rolls back.
//
// The statements that only set the unit up, queued first by
// QueueLockShared (the tenant's shared lock) and QueueGenericPlans, become
// further columns of the pin's SELECT: one statement instead of up to
// three, and one that PostgreSQL does not analyze again. A cached
// statement is analyzed and planned again whenever search_path differs
// from the one it was last analyzed under; the pin runs before it takes
// effect, under the empty search_path every unit starts from, whereas a
// statement after it runs under the search_path of whichever tenant the
// connection served last. The columns are evaluated in order, the pin
// first; none of the folded functions depends on search_path (pg_catalog
// is named), and a failure of any fails the pin's statement, as it failed
// its own before.
func pinStatement(t tenantctx.Tenant, quoted string, first *pgx.Batch, timeout time.Duration, idle bool) (sql string, args []any, folded int) {
	var b strings.Builder
	b.WriteString(ownedPinSQL)
	args = []any{quoted, t.Schema, ownerComment(t)}
	if timeout > 0 {
		args = append(args, strconv.FormatInt(timeoutMillis(timeout), 10))
		fmt.Fprintf(&b, ", pg_catalog.set_config('statement_timeout', $%d, true)", len(args))
		if idle {
			fmt.Fprintf(&b, ", pg_catalog.set_config('idle_in_transaction_session_timeout', $%d, true)", len(args))
		}
	}
	if first == nil {
		return b.String(), args, 0
	}
	lock, generic := false, false
	for _, q := range first.QueuedQueries {
		switch {
		case q.SQL == sharedLockSQL && !lock && len(q.Arguments) == 2:
			lock = true
			args = append(args, q.Arguments...)
			fmt.Fprintf(&b, ", pg_catalog.pg_advisory_xact_lock_shared($%d::int4, pg_catalog.hashtext($%d))", len(args)-1, len(args))
		case q.SQL == genericPlansSQL && !generic:
			generic = true
			b.WriteString(", pg_catalog.set_config('plan_cache_mode', 'force_generic_plan', true)")
		default:
			return b.String(), args, folded
		}
		folded++
	}
	return b.String(), args, folded
}

// maxStatementTimeout is the largest statement_timeout PostgreSQL accepts
// (INT_MAX milliseconds, about 24.8 days).
const maxStatementTimeout = (1<<31 - 1) * time.Millisecond

// deadlineTimeout is the time left before ctx's deadline, at least a
// millisecond, for statement_timeout; 0 (no setting) without a deadline or
// with one further away than statement_timeout can express.
func deadlineTimeout(ctx context.Context) time.Duration {
	deadline, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	left := max(time.Until(deadline), time.Millisecond)
	if left > maxStatementTimeout {
		return 0
	}
	return left
}

// timeoutMillis is d in whole milliseconds, rounded up: statement_timeout's
// unit, where 0 would mean no timeout at all.
func timeoutMillis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// queueCopies queues copies of the statements src into b: pgx keeps what
// it learned about a statement (its prepared description) in the queued
// statement, and a statement is sent again after a failed prepare.
func queueCopies(b *pgx.Batch, src []*pgx.QueuedQuery) {
	for _, q := range src {
		b.QueuedQueries = append(b.QueuedQueries, &pgx.QueuedQuery{SQL: q.SQL, Arguments: q.Arguments, Fn: q.Fn})
	}
}

// beginSQL opens the unit's transaction. It is sent in the extended
// protocol like every statement of a batch, so it is a statement of its
// own; the pin follows it with the schema as a bind parameter.
const beginSQL = "BEGIN"

// beginReadCommittedSQL is beginSQL at READ COMMITTED, whatever the
// database's or role's default_transaction_isolation.
const beginReadCommittedSQL = "BEGIN ISOLATION LEVEL READ COMMITTED"

// batchUnit is one InTenantBatches call's connection.
type batchUnit struct {
	conn *pgx.Conn
	// beginSQL opens the transaction (beginSQL or beginReadCommittedSQL).
	beginSQL string
	// timed says begin set statement_timeout, computed at timedAt.
	timed   bool
	timedAt time.Time
	// full says a statement of the unit may leave session state that only
	// the full check sees (mayLeaveSessionState).
	full bool
}

// note sets full when a statement queued in b may leave session state.
func (u *batchUnit) note(b *pgx.Batch) {
	if b == nil || u.full {
		return
	}
	for _, q := range b.QueuedQueries {
		if mayLeaveSessionState(q.SQL) {
			u.full = true
			return
		}
	}
}

// end sends b followed by COMMIT and the check, and reads the results.
func (u *batchUnit) end(ctx context.Context, tenantID string, b *pgx.Batch) error {
	if err := u.commit(ctx, b); err != nil {
		return fmt.Errorf("in tenant %s: %w", tenantID, err)
	}
	return nil
}

// commit sends b followed by COMMIT and the check, and reads the results.
// A failure is rolled back (rollback); a commit whose session the check
// cannot prove clean closes the connection and is no error of the unit;
// a clean one is marked verified for AfterRelease.
func (u *batchUnit) commit(ctx context.Context, b *pgx.Batch) error {
	var checkErr error
	checked, committed := false, false
	b.Queue("COMMIT").Exec(func(tag pgconn.CommandTag) error {
		committed = tag.String() == "COMMIT"
		return nil
	})
	b.Queue(verifyFor(u.full)).QueryRow(func(row pgx.Row) error {
		var path, user string
		var clean bool
		if err := row.Scan(&path, &clean, &user); err != nil {
			return fmt.Errorf("verify search_path: %w", err)
		}
		checked, checkErr = true, cleanSession(path, clean, user, loginOf(u.conn))
		return nil
	})
	err := u.conn.SendBatch(ctx, b).Close()
	if err != nil && !committed {
		u.rollback(ctx)
		return err
	}
	if err != nil || !checked || checkErr != nil {
		// Committed, but the session is not provably clean (a statement
		// set search_path for the session, created a temporary table, and
		// the check ended the server session: see endDirtySQL; or the
		// connection failed after COMMIT's answer): the connection must not
		// be reused. The data is committed, so this is no error of the unit
		// of work.
		u.close(ctx)
		return nil
	}
	markVerified(u.conn)
	return nil
}

// rollback ends a transaction left open by an error (or a panic) with
// "ROLLBACK; verify" on a context that outlives ctx's cancellation, and
// marks the connection verified when the check proves it clean; otherwise
// it closes the connection (AfterRelease then destroys it).
func (u *batchUnit) rollback(ctx context.Context) {
	pc := u.conn.PgConn()
	if pc.IsClosed() {
		return
	}
	rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), verifyTimeout)
	defer cancel()
	sql := endSQL(false, u.full)
	if pc.TxStatus() == 'I' {
		sql = verifyFor(u.full) // the transaction already ended (a callback failed after COMMIT)
	}
	results, err := pc.Exec(rbCtx, sql).ReadAll()
	if err == nil {
		_, err = checkVerifyResult(results, loginOf(u.conn))
	}
	if err != nil || pc.TxStatus() != 'I' {
		_ = u.conn.Close(rbCtx)
		return
	}
	markVerified(u.conn)
}

// close closes the connection; AfterRelease then destroys it.
func (u *batchUnit) close(ctx context.Context) {
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), verifyTimeout)
	_ = u.conn.Close(closeCtx)
	cancel()
}

// cleanSession checks the values of verifySQL (or verifyUnitSQL):
// search_path, whether the session is clean (its search_path included),
// and the session user, which must be login (unless login is "": a
// connection of a pool without ConfigurePool).
func cleanSession(path string, clean bool, user, login string) error {
	if path != "" && path != `""` {
		return fmt.Errorf("%w: search_path is %.100q", errNotClean, path)
	}
	if !clean {
		return fmt.Errorf("%w: session has a temporary schema, another role, an open cursor, a LISTEN, an SQL prepared statement or an advisory lock", errNotClean)
	}
	if login != "" && user != login {
		return fmt.Errorf("%w: session user is %.100q, not the login %.100q", errNotClean, user, login)
	}
	return nil
}

// QueueLockShared queues the tenant's shared lock (see LockShared) into b,
// for a unit of InTenantBatch or InTenantBatches: held from there until the
// unit ends. Queued before any other statement of the unit's first batch
// (or after QueueGenericPlans only), it is taken by the pin's statement.
// The schema comes from the tenant in ctx; without one it returns
// ErrNoTenant and queues nothing.
func QueueLockShared(ctx context.Context, b *pgx.Batch) error {
	t, err := tenantFrom(ctx, "lock tenant")
	if err != nil {
		return err
	}
	b.Queue(sharedLockSQL, lockNamespace, t.Schema).Exec(func(pgconn.CommandTag) error { return nil })
	return nil
}

// genericPlansSQL makes the statements after it in the transaction use
// their generic plan (plan_cache_mode, SET LOCAL: it ends with the
// transaction).
const genericPlansSQL = "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)"

// QueueGenericPlans queues, into b, a transaction-local setting that makes
// the prepared statements after it run their generic plan, built once per
// statement and connection, instead of planning a custom plan for each of
// their first five executions (PostgreSQL's plan_cache_mode=auto). It
// suits statements whose best plan does not depend on the parameter
// values (a lookup by primary key) and whose text is the tenant's own
// (invoice.QueueLoadFor), so that the plan is kept from one task to the
// next. Like the pin it is SET LOCAL: COMMIT or ROLLBACK ends it, and the
// next unit on the connection starts from the server's default. Queued
// first in a unit's first batch (or after QueueLockShared only), it is set
// by the pin's statement.
func QueueGenericPlans(b *pgx.Batch) {
	b.Queue(genericPlansSQL).Exec(func(pgconn.CommandTag) error { return nil })
}
