package schema

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PoolOptions tunes NewPool. The zero value is usable.
type PoolOptions struct {
	// MaxConns caps the pool; 0 keeps pgx's default (max(4, NumCPU)) or the
	// pool_max_conns of the URL.
	MaxConns int32
	// MinConns is how many connections the pool keeps open: pgx opens them
	// in the background once the pool exists, and again when one closes
	// (idle time, lifetime, a failed check), so that a burst of work does
	// not wait for new PostgreSQL connections (on a busy machine a new
	// backend's start took 50-150 ms here). 0 keeps pgx's default (none,
	// or the URL's pool_min_conns); above MaxConns it is MaxConns.
	MinConns int32
	// Logger receives a warning for every connection the pool destroys
	// because it could not be proven clean. nil discards.
	Logger *slog.Logger
	// AfterConnect, when set, runs on every new connection, before the
	// check that its search_path is empty (pgxpool.Config.AfterConnect);
	// an error refuses the connection. It must leave the session as it
	// found it (that check and the release checks still apply).
	AfterConnect func(ctx context.Context, conn *pgx.Conn) error
}

// verifyTimeout bounds the verification query AfterRelease runs (it has no
// context of its own) and the rollback of a cancelled transaction.
const verifyTimeout = 5 * time.Second

// verifySQL reads the session's search_path, whether the rest of the
// session is as a unit found it, and the session user: the session never
// created a temporary schema (a temporary table would be searched before
// any schema for unqualified names, so a connection that has one is not
// clean either, whatever its search_path says), its role is the session
// user (a SET ROLE left behind would run the next tenant's units with
// another role's rights), no cursor is open (a WITH HOLD cursor outlives
// its transaction), the session listens on no channel (a LISTEN would
// deliver one tenant's notifications to the next tenant's units), holds
// no SQL prepared statement (a PREPARE outlives its transaction: the next
// tenant's units would find its name taken, and could EXECUTE it; pgx's
// own protocol-level statements, from_sql false, are its statement cache
// and do not count), holds no advisory lock (after COMMIT or ROLLBACK only
// a session-level one such as pg_advisory_lock's is left, which would stay
// with the next tenant's units and hold off whoever waits for it), and
// the session user is still the one the connection logged in as (SET
// SESSION AUTHORIZATION changes session_user and current_user alike; the
// login is read by AfterConnect). Other session settings are not checked
// (reading them all costs the server more than the unit); units change
// them only with SET LOCAL.
//
// The last two cost the server more than the rest together, and grow
// with what this package has no say over: pg_prepared_statements builds a
// row, with its text, for every statement pgx keeps prepared on the
// connection (up to 512, two per tenant on the PDF path: 0.4 to 6 ms with
// 40 to 500 statements of 1.5 KB), and pg_locks reads every lock of the
// server under all its lock partitions (50 to 115 us with max_connections
// 300; docs/performance.md). So AfterConnect and AfterRelease, which know
// nothing of what ran, run verifySQL, while a unit of work (InTenant,
// InTenantBatch, InTenantBatches) ends with verifyUnitSQL, the rest of
// the check, unless one of its statements names a PREPARE or a
// session-level advisory lock (mayLeaveSessionState).
const verifySQL = verifyHead + verifySessionExtras + verifyTail

// verifyUnitSQL is verifySQL without its checks of SQL prepared
// statements and advisory locks, for a unit of work whose statements name
// neither (see verifySQL). It returns the same columns.
const verifyUnitSQL = verifyHead + verifyTail

// The parts of verifySQL and verifyUnitSQL: the session's search_path;
// whether the session is clean, its search_path included, where a session
// found not clean is ended (endDirtySQL); and the session user.
const (
	verifyHead = "SELECT pg_catalog.current_setting('search_path'), CASE WHEN pg_catalog.current_setting('search_path') IN ('', '\"\"')" +
		" AND pg_catalog.pg_my_temp_schema() = 0" +
		" AND current_user = session_user AND NOT EXISTS (SELECT FROM pg_catalog.pg_cursors WHERE name <> '')" +
		" AND NOT EXISTS (SELECT FROM pg_catalog.pg_listening_channels())"
	verifySessionExtras = " AND NOT EXISTS (SELECT FROM pg_catalog.pg_prepared_statements WHERE from_sql)" +
		" AND NOT EXISTS (SELECT FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid())"
	verifyTail = " THEN true ELSE " + endDirtySQL + " END, session_user"
)

// endDirtySQL ends the server session itself when the check finds it not
// clean (a search_path left behind, or any of the other states), in the
// check's own statement, and is false: it resets the role (a role left
// behind may not signal the login's backend) and terminates its own
// backend, which the client then sees as an error instead of the check's
// row (or as a row that says not clean, should the row come first).
// Closing the client's connection is not enough behind PgBouncer in
// transaction mode: the client's connection is not the server's, and
// PgBouncer would hand the server session, with a temporary table that
// unqualified names find before any schema, a role or a cursor, to its
// next client, another tenant's unit. The check runs on the server
// connection the unit ran on (in the unit's last round trip), so this is
// the session the unit left state on. A clean session evaluates none of
// it. A session whose session user was changed (SET SESSION
// AUTHORIZATION, a superuser login only) is not ended when the new one may
// not signal the login's backend; the client still closes its connection.
const endDirtySQL = "NOT (pg_catalog.set_config('role', 'none', false) IS NOT NULL" +
	" AND pg_catalog.pg_terminate_backend(pg_catalog.pg_backend_pid()))"

// verifyFor is the check a unit of work ends with: verifySQL when full
// (one of its statements may have left a prepared statement or a
// session-level advisory lock), otherwise verifyUnitSQL.
func verifyFor(full bool) string {
	if full {
		return verifySQL
	}
	return verifyUnitSQL
}

// mayLeaveSessionState reports whether sql names what may leave state on
// the session that only verifySQL's full check sees: PREPARE (an SQL
// prepared statement) or a session-level advisory lock function
// (pg_advisory_lock, pg_try_advisory_lock and their _shared forms; the
// transaction-level ones, pg_advisory_xact_lock..., do not match). It
// reads the text only, ASCII letters in any case: a statement that merely
// mentions one (a column prepared_at) costs its unit the full check, not
// its connection. What server-side code does (a function, SQL a DO block
// assembles from pieces) is not in the text: a unit's statements must not
// call code that takes session-level advisory locks or prepares
// statements.
func mayLeaveSessionState(sql string) bool {
	return containsFold(sql, "prepare") || containsFold(sql, "advisory_lock")
}

// containsFold reports whether s contains word, a lower-case ASCII word,
// in any case, without allocating.
func containsFold(s, word string) bool {
	for i := 0; i+len(word) <= len(s); i++ {
		j := 0
		for j < len(word) {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != word[j] {
				break
			}
			j++
		}
		if j == len(word) {
			return true
		}
	}
	return false
}

// NewPool parses databaseURL, forces an empty search_path (RuntimeParams)
// and installs the release checks of ConfigurePool. Like pgxpool.New it
// connects lazily: the first Acquire reports an unreachable server.
//
// Behind PgBouncer in transaction pooling mode, put
// default_query_exec_mode=exec in the URL, and make PgBouncer pass
// search_path on (track_extra_parameters = search_path, PgBouncer >= 1.20):
// a PgBouncer that ignores the startup parameter makes every new
// connection fail AfterConnect's check instead of silently using the
// server's default search_path.
func NewPool(ctx context.Context, databaseURL string, opts PoolOptions) (*pgxpool.Pool, error) {
	cfg, err := ParseConfig(databaseURL)
	if err != nil {
		return nil, err
	}
	if opts.MaxConns < 0 {
		return nil, fmt.Errorf("new pool: MaxConns %d is negative", opts.MaxConns)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.MinConns < 0 {
		return nil, fmt.Errorf("new pool: MinConns %d is negative", opts.MinConns)
	}
	if opts.MinConns > 0 {
		cfg.MinConns = min(opts.MinConns, cfg.MaxConns)
	}
	if opts.AfterConnect != nil {
		// Runs first (ConfigurePool keeps hooks already set), so that a
		// connection it refuses never reaches the clean-connection state.
		cfg.AfterConnect = opts.AfterConnect
	}
	ConfigurePool(cfg, opts.Logger)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("new pool: %w", err)
	}
	return pool, nil
}

// ParseConfig is pgxpool.ParseConfig with an error that quotes nothing of
// databaseURL: pgx's quotes it with the password masked as best it can,
// and a keyword/value string whose quoted password is not closed keeps
// the rest of it ("password=xxxxx horse"), as does one written
// "password = s3cret" (spaces around the '='). A file the URL (or a PG*
// variable) names and that cannot be read is named with its error: the
// URL itself is then fine. A host holding an '@' is refused: pgx splits
// a URL's authority at its first '@', so an unencoded one in the password
// makes the rest of the password the host, which every dial error would
// quote. Parse every database URL that may reach a log line or an error
// with it (NewPool does).
func ParseConfig(databaseURL string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err == nil {
		if unencodedAt(cfg.ConnConfig) {
			return nil, errors.New("parse database url: the host holds an '@': percent-encode '@' in the user and password as %40 (nothing of the URL is quoted: it may be part of the password)")
		}
		return cfg, nil
	}
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		return nil, fmt.Errorf("parse database url: cannot read %s: %w", pe.Path, pe.Err)
	}
	return nil, errors.New("parse database url: does not parse as a PostgreSQL connection string (URL or keyword/value)")
}

// unencodedAt reports whether a host cfg dials holds an '@', what an
// unencoded '@' in a URL's password leaves there. A Unix socket directory
// (an absolute path) may hold one.
func unencodedAt(cfg *pgx.ConnConfig) bool {
	hosts := []string{cfg.Host}
	for _, f := range cfg.Fallbacks {
		hosts = append(hosts, f.Host)
	}
	for _, h := range hosts {
		if !strings.HasPrefix(h, "/") && strings.Contains(h, "@") {
			return true
		}
	}
	return false
}

// DefaultConnectTimeout bounds opening one connection (TCP, TLS and the
// start-up exchange) when the database URL sets no connect_timeout.
const DefaultConnectTimeout = 10 * time.Second

// ConfigurePool applies NewPool's hardening to a config built elsewhere
// (hooks already in cfg are kept and run first):
//
//   - ConnConfig.ConnectTimeout = DefaultConnectTimeout unless the URL set
//     connect_timeout.
//   - RuntimeParams["search_path"] = "": PostgreSQL applies the empty
//     string from the startup packet as an empty list, so SHOW search_path
//     is empty and an unqualified table name fails with "relation ... does
//     not exist" unless InTenant pinned a schema.
//   - RuntimeParams["client_encoding"] = "UTF8": pgx reads and writes
//     text as UTF-8, and the startup parameter wins over an operator's
//     ALTER DATABASE or ALTER ROLE ... SET client_encoding (under LATIN1
//     a name outside Latin-1 fails every load with 22P05, and one inside
//     it is stored double-encoded).
//   - RuntimeParams["standard_conforming_strings"] = "on": the literals
//     this package writes into its simple-protocol statements (sqlLiteral)
//     take a backslash as itself, and pgx refuses a simple-protocol
//     statement with arguments otherwise (a move's lock), whatever an
//     operator set for the database or role.
//   - RuntimeParams["DateStyle"] = "ISO, MDY": with
//     default_query_exec_mode=exec (behind PgBouncer) results come back as
//     text, and pgx reads dates and timestamps as text only in the ISO
//     style; an operator's 'SQL, DMY' or 'German' failed every load.
//   - AfterConnect proves them on every new connection (one query per
//     connection; the encoding, string setting and date style as the
//     server reported them, no query) and refuses a connection where a role or database
//     setting, or a pooler, replaced them. The same round trip reads the
//     session's idle_session_timeout: ShouldPing pings a connection idle
//     for half of it on acquire (besides pgxpool's ping after a second
//     idle), so a connection the server ended sooner is replaced rather
//     than failing its next statement with 57P05.
//   - A connection released closed, busy or not idle (TxStatus != 'I')
//     is destroyed (by pgxpool, before AfterRelease) and logged
//     (BeforeClose). AfterRelease, and PrepareConn on acquire, destroy
//     one whose server reports that it takes no writes (readOnlyServer:
//     a hot standby, default_transaction_read_only) once it is
//     readOnlyConnLifetime (5 s) old and its server, asked when it was
//     made (takesNoWrites: behind PgBouncer the report may be that of
//     another, older session), said so too, logged at debug, so that the next
//     use dials again and reaches a primary once the address leads to
//     one, while a server that stays read-only is dialed at most once
//     per connection in that time, not at every use. Otherwise
//     AfterRelease runs one verification query (search_path
//     still empty, no temporary schema, and the rest of verifySQL's
//     checks) and destroys the connection on any
//     doubt: an error, a timeout, an unexpected value. It verifies rather
//     than resets: behind a transaction-pooling PgBouncer a session-level
//     reset would land on some server connection that other clients share.
//
// The verification query is skipped for a connection whose last use was a
// unit of work (InTenant, InTenantBatch, InTenantBatches): a unit ends its
// transaction with COMMIT and the verification in a single round trip (or
// ROLLBACK and it), so the proof arrives with the commit at no extra cost,
// and the unit marks the connection verified only when that proof
// succeeded. The mark is consumed
// by the very next AfterRelease, so a connection later acquired by other
// code (pool.Acquire, pool.Exec, pool.Begin) is never trusted: its release
// is verified by a query.
func ConfigurePool(cfg *pgxpool.Config, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// Without one, a server (or pooler) that accepts the connection and
		// never answers holds every caller, the start-up check too, for ever.
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = make(map[string]string)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = ""
	cfg.ConnConfig.RuntimeParams["client_encoding"] = "UTF8"
	cfg.ConnConfig.RuntimeParams["standard_conforming_strings"] = "on"
	cfg.ConnConfig.RuntimeParams["DateStyle"] = "ISO, MDY"

	prevAfterConnect := cfg.AfterConnect
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		if prevAfterConnect != nil {
			if err := prevAfterConnect(ctx, conn); err != nil {
				return err
			}
		}
		if enc := conn.PgConn().ParameterStatus("client_encoding"); enc != "UTF8" {
			return fmt.Errorf("new connection has client_encoding %q, not UTF8: a pooler in between does not pass the startup parameter on", enc)
		}
		if scs := conn.PgConn().ParameterStatus("standard_conforming_strings"); scs != "on" {
			return fmt.Errorf("new connection has standard_conforming_strings %q, not on: a pooler in between does not pass the startup parameter on", scs)
		}
		if ds := conn.PgConn().ParameterStatus("DateStyle"); !strings.HasPrefix(ds, "ISO") {
			return fmt.Errorf("new connection has DateStyle %q, not ISO: a pooler in between does not pass the startup parameter on", ds)
		}
		login, idleTimeout, err := verifyNew(ctx, conn)
		if err != nil {
			return fmt.Errorf("new connection is not unpinned: %w", err)
		}
		// A connection reported read-only is asked (no cost otherwise):
		// behind PgBouncer the report is the one its pool's first server
		// connection made, which may be long out of date.
		readOnly := readOnlyServer(conn.PgConn()) && takesNoWrites(ctx, conn)
		conns.Store(conn, &connState{logger: logger, login: login, connected: time.Now(), readOnly: readOnly, idleTimeout: idleTimeout})
		return nil
	}

	// pgxpool pings a connection on acquire once it has been idle for a
	// second; a server whose idle_session_timeout is shorter (an
	// operator's setting) ends it sooner, and its next use would fail
	// with 57P05, which the worker counts as its database unavailable.
	// Such a connection is pinged once idle for half that timeout: a ping
	// that fails destroys it, and the acquire takes another.
	prevShouldPing := cfg.ShouldPing
	cfg.ShouldPing = func(ctx context.Context, p pgxpool.ShouldPingParams) bool {
		if prevShouldPing != nil {
			if prevShouldPing(ctx, p) {
				return true
			}
		} else if p.IdleDuration > defaultPingIdle {
			return true
		}
		st, ok := stateOf(p.Conn)
		return ok && st.idleTimeout > 0 && p.IdleDuration > st.idleTimeout/2
	}

	// The ctx of each acquire is kept with the connection until its
	// release, so that what the release logs carries the holder's
	// attributes (a task's tenant_id, task_id, task_type), which pgx's
	// AfterRelease, having no ctx, cannot give.
	prevPrepare := cfg.PrepareConn
	if prevPrepare == nil && cfg.BeforeAcquire != nil {
		// pgx ignores BeforeAcquire once PrepareConn is set: keep it.
		before := cfg.BeforeAcquire
		prevPrepare = func(ctx context.Context, conn *pgx.Conn) (bool, error) { return before(ctx, conn), nil }
	}
	cfg.PrepareConn = func(ctx context.Context, conn *pgx.Conn) (bool, error) {
		if prevPrepare != nil {
			if ok, err := prevPrepare(ctx, conn); !ok || err != nil {
				return ok, err
			}
		}
		if staleReadOnly(conn) {
			// Destroyed, and the acquire takes another or dials one.
			logger.DebugContext(ctx, "schema: closing idle connection to a server that took no writes",
				slog.String("in_hot_standby", conn.PgConn().ParameterStatus("in_hot_standby")),
				slog.String("default_transaction_read_only", conn.PgConn().ParameterStatus("default_transaction_read_only")))
			return false, nil
		}
		if st, ok := stateOf(conn); ok {
			st.mu.Lock()
			st.holder = ctx
			st.mu.Unlock()
		}
		return true, nil
	}

	prevAfterRelease := cfg.AfterRelease
	cfg.AfterRelease = func(conn *pgx.Conn) bool {
		if prevAfterRelease != nil && !prevAfterRelease(conn) {
			return false
		}
		return afterRelease(conn, logger)
	}

	prevBeforeClose := cfg.BeforeClose
	cfg.BeforeClose = func(conn *pgx.Conn) {
		destroyedOnRelease(conn, logger)
		conns.Delete(conn)
		if prevBeforeClose != nil {
			prevBeforeClose(conn)
		}
	}
}

// defaultPingIdle is how long a connection is idle before pgxpool's own
// ShouldPing pings it on acquire, which ConfigurePool's keeps.
const defaultPingIdle = time.Second

// connState is what this package knows about a connection of a configured
// pool.
type connState struct {
	logger *slog.Logger
	// login is the session user the connection started with (read by
	// AfterConnect); verification fails when the session user changed.
	login string
	// verified is set by InTenant when its final round trip proved the
	// connection clean, and consumed by the next AfterRelease. Only the
	// goroutine holding the connection sets it; AfterRelease runs after that
	// goroutine released it, so the mutex only guards the hand-over.
	mu       sync.Mutex
	verified bool
	// holder is the ctx of the acquire that holds the connection, for the
	// attributes of what its release logs; nil when none does.
	holder context.Context
	// connected is when AfterConnect saw the connection made
	// (staleReadOnly).
	connected time.Time
	// readOnly is whether the connection's server, asked by AfterConnect
	// because it reported itself read-only (readOnlyServer), took no
	// writes then (staleReadOnly).
	readOnly bool
	// idleTimeout is the server's idle_session_timeout for the session
	// when it was made (0: none, or a server before PostgreSQL 14).
	idleTimeout time.Duration
}

// conns maps each live *pgx.Conn of a configured pool to its state: added
// by AfterConnect, removed by BeforeClose.
var conns sync.Map // *pgx.Conn -> *connState

func stateOf(conn *pgx.Conn) (*connState, bool) {
	v, ok := conns.Load(conn)
	if !ok {
		return nil, false
	}
	return v.(*connState), true
}

// loginOf returns the session user conn started with, or "" for a
// connection of a pool that ConfigurePool did not configure (not checked).
func loginOf(conn *pgx.Conn) string {
	st, ok := stateOf(conn)
	if !ok {
		return ""
	}
	return st.login
}

// markVerified records that conn was proven clean just now by its owner.
// It reports false for a connection of a pool that ConfigurePool did not
// configure (nobody would consume the mark).
func markVerified(conn *pgx.Conn) bool {
	st, ok := stateOf(conn)
	if !ok {
		return false
	}
	st.mu.Lock()
	st.verified = true
	st.mu.Unlock()
	return true
}

// takeVerified consumes the mark set by markVerified.
func takeVerified(conn *pgx.Conn) bool {
	st, ok := stateOf(conn)
	if !ok {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	v := st.verified
	st.verified = false
	return v
}

// takeHolder returns the ctx of the acquire that held conn (for its
// values only: it may be done by now), or context.Background(), and
// forgets it.
func takeHolder(conn *pgx.Conn) context.Context {
	st, ok := stateOf(conn)
	if !ok {
		return context.Background()
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	h := st.holder
	st.holder = nil
	if h == nil {
		return context.Background()
	}
	return h
}

// destroyedOnRelease logs conn, about to be closed, if it was released
// not idle (closed, busy or in a transaction): pgxpool's Release destroys
// such a connection without calling AfterRelease, so what tells it apart
// is its holder, which only afterRelease forgets. It logs with the
// holder's ctx, as afterRelease does.
func destroyedOnRelease(conn *pgx.Conn, logger *slog.Logger) {
	st, ok := stateOf(conn)
	if !ok {
		return
	}
	st.mu.Lock()
	holder := st.holder
	st.holder = nil
	st.mu.Unlock()
	if holder == nil {
		return // not held, or released through AfterRelease
	}
	pc := conn.PgConn()
	if conn.IsClosed() || pc.IsBusy() || pc.TxStatus() != 'I' {
		logger.WarnContext(holder, "schema: destroying released connection that is not idle",
			slog.String("tx_status", string(pc.TxStatus())), slog.Bool("closed", conn.IsClosed()))
	}
}

// afterRelease decides whether a released connection goes back to the
// pool. What it logs carries the attributes of the ctx that held the
// connection (a logger built on internal/logctx adds a task's).
func afterRelease(conn *pgx.Conn, logger *slog.Logger) bool {
	holder := takeHolder(conn)
	pc := conn.PgConn()
	if conn.IsClosed() || pc.IsBusy() || pc.TxStatus() != 'I' {
		takeVerified(conn)
		logger.WarnContext(holder, "schema: destroying released connection that is not idle",
			slog.String("tx_status", string(pc.TxStatus())), slog.Bool("closed", conn.IsClosed()))
		return false
	}
	if staleReadOnly(conn) {
		takeVerified(conn)
		logger.DebugContext(holder, "schema: closing released connection to a server that takes no writes",
			slog.String("in_hot_standby", pc.ParameterStatus("in_hot_standby")),
			slog.String("default_transaction_read_only", pc.ParameterStatus("default_transaction_read_only")))
		return false
	}
	if takeVerified(conn) {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), verifyTimeout)
	defer cancel()
	if _, err := verifyClean(ctx, conn); err != nil {
		logger.WarnContext(holder, "schema: destroying released connection that could not be proven clean",
			slog.String("error", err.Error()))
		return false
	}
	return true
}

// readOnlyServer reports whether pc's server said it takes no writes on
// this session: in_hot_standby or default_transaction_read_only on, as
// PostgreSQL 14 and later report them to the client whenever they change
// (no round trip). Such a connection is not kept for long (staleReadOnly,
// readOnlyConnLifetime): a session stays on the
// server it was opened on, so one opened on a standby (reached through a
// DNS name or a proxy that still led to the old primary after a failover)
// or while default_transaction_read_only was set would refuse every write
// for its whole life, long after the address led to a primary again.
func readOnlyServer(pc *pgconn.PgConn) bool {
	return pc.ParameterStatus("in_hot_standby") == "on" || pc.ParameterStatus("default_transaction_read_only") == "on"
}

// readOnlyConnLifetime is how long a connection whose server takes no
// writes (readOnlyServer) is kept: released or acquired after it, it is
// closed, and the next use dials again. It bounds how long a session
// opened on a standby, or while default_transaction_read_only was set,
// outlives the server's or the address's return to writes, and how often
// a pool dials while the server stays read-only (at most once per
// connection of the pool in that time, rather than at every use, which
// would open a new session for every read the server still serves).
const readOnlyConnLifetime = 5 * time.Second

// staleReadOnly reports whether conn's server takes no writes
// (readOnlyServer, and so it answered when conn was made) and conn was
// made readOnlyConnLifetime ago or more.
func staleReadOnly(conn *pgx.Conn) bool {
	if !readOnlyServer(conn.PgConn()) {
		return false
	}
	st, ok := stateOf(conn)
	if !ok {
		return true
	}
	st.mu.Lock()
	connected, readOnly := st.connected, st.readOnly
	st.mu.Unlock()
	return readOnly && time.Since(connected) >= readOnlyConnLifetime
}

// transactionReadOnlySQL reads whether a transaction of the session would
// take no writes: the server is in recovery (a hot standby) or the
// session's default_transaction_read_only is on.
const transactionReadOnlySQL = "SELECT pg_catalog.current_setting('transaction_read_only')"

// takesNoWrites asks conn's server whether a transaction of the session
// takes no writes (transactionReadOnlySQL); an error answers true. Behind
// PgBouncer the parameters a client connection reports
// (readOnlyServer's) are those the pool's first server connection
// reported, however long ago: one made while the database was read-only
// says default_transaction_read_only on for as long as PgBouncer runs.
func takesNoWrites(ctx context.Context, conn *pgx.Conn) bool {
	results, err := conn.PgConn().Exec(ctx, transactionReadOnlySQL).ReadAll()
	if err != nil || len(results) != 1 || len(results[0].Rows) != 1 || len(results[0].Rows[0]) != 1 {
		return true
	}
	return string(results[0].Rows[0][0]) != "off"
}

// errNotClean reports a connection whose session state failed verification.
var errNotClean = errors.New("connection not clean")

// verifyClean runs verifySQL on conn and checks its answer; it returns
// the session user.
func verifyClean(ctx context.Context, conn *pgx.Conn) (string, error) {
	results, err := conn.PgConn().Exec(ctx, verifySQL).ReadAll()
	if err != nil {
		return "", fmt.Errorf("verify search_path: %w", err)
	}
	return checkVerifyResult(results, loginOf(conn))
}

// idleTimeoutSQL reads the session's idle_session_timeout in
// milliseconds (no row before PostgreSQL 14).
const idleTimeoutSQL = "SELECT setting FROM pg_catalog.pg_settings WHERE name = 'idle_session_timeout'"

// verifyNew is verifyClean for a new connection, which also reads the
// server's idle_session_timeout for the session in the same round trip.
func verifyNew(ctx context.Context, conn *pgx.Conn) (string, time.Duration, error) {
	results, err := conn.PgConn().Exec(ctx, idleTimeoutSQL+"; "+verifySQL).ReadAll()
	if err != nil {
		return "", 0, fmt.Errorf("verify search_path: %w", err)
	}
	login, err := checkVerifyResult(results, loginOf(conn))
	if err != nil {
		return "", 0, err
	}
	var idle time.Duration
	if len(results) == 2 && len(results[0].Rows) == 1 && len(results[0].Rows[0]) == 1 {
		if ms, err := strconv.ParseInt(string(results[0].Rows[0][0]), 10, 64); err == nil && ms > 0 {
			idle = time.Duration(ms) * time.Millisecond
		}
	}
	return login, idle, nil
}

// checkVerifyResult checks the last result of a round trip that ended with
// verifySQL: search_path empty ("" or the quoted empty identifier `""`
// that SET of an empty string stores), no temporary schema, no other role,
// no open cursor, no LISTEN, no SQL prepared statement, no advisory lock,
// and the session user login (unless login is ""). It returns the session
// user.
func checkVerifyResult(results []*pgconn.Result, login string) (string, error) {
	if len(results) == 0 {
		return "", fmt.Errorf("%w: no verification result", errNotClean)
	}
	r := results[len(results)-1]
	if r.Err != nil {
		return "", fmt.Errorf("verify search_path: %w", r.Err)
	}
	if len(r.Rows) != 1 || len(r.Rows[0]) != 3 {
		return "", fmt.Errorf("%w: unexpected verification result shape", errNotClean)
	}
	user := string(r.Rows[0][2])
	return user, cleanSession(string(r.Rows[0][0]), string(r.Rows[0][1]) == "t", user, login)
}
