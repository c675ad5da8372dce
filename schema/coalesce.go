package schema

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/tenantctx"
)

// Coalescer runs short units of work of concurrent callers together: the
// units that wait while a round trip to a pool's server is in flight go
// out in the next one, each pinned to its own tenant, on one connection.
// A unit costs the server and the client about half of what an
// InTenantBatch of its own costs (docs/performance.md): the server wakes
// once per round trip instead of once per unit, and one backend does the
// work of many.
//
// It takes units of one statement (an existence check, a look-up) through
// InTenantBatch; anything else goes to InTenantBatch unchanged (see
// InTenantBatch). The guarantees of InTenantBatch hold for each unit:
//
//   - without a tenant in ctx it returns ErrNoTenant before touching the
//     pool;
//   - each unit is its own transaction, pinned to its tenant's schema like
//     InTenantBatch's (the owner check included) until the transaction
//     ends: the unit's statements up to a protocol Sync are one implicit
//     transaction, so an error rolls back that unit only, and the next
//     unit on the connection starts afresh;
//   - a unit's pin refuses to run on a session an earlier unit of the same
//     round trip left unclean (search_path set for the session, a
//     temporary schema, another role): the unit fails, nothing of it runs.
//     Units whose statement names what could leave such state
//     (set_config, SET, temporary tables, roles, PREPARE, session-level
//     advisory locks, LISTEN, cursors, transaction control) are not
//     coalesced at all;
//   - a unit that leaves a transaction open (a BEGIN in its statement)
//     fails, and so does every unit after it in the round trip: they ran
//     inside that transaction, which is never committed (the connection is
//     closed);
//   - the round trip ends with the clean-connection check, and a
//     connection it cannot prove clean is closed;
//   - the unit's deadline reaches the server (statement_timeout), and a
//     caller whose ctx ends stops waiting at once: its callbacks are then
//     never run, and the outcome of a unit that wrote is unknown, as with
//     InTenantBatch.
//
// A unit runs behind the others of its round trip, so a unit waiting for a
// lock would hold them all up: inside a shared round trip a unit waits for
// a lock at most LockWait (lock_timeout), and a unit that timed out
// waiting runs again on its own through InTenantBatch, with its whole
// deadline. Its callback has not run then (it has one statement).
//
// Statements are prepared on each connection the first time a unit brings
// them (named protocol-level statements, prepared under the unit's pin, so
// unqualified names resolve; PostgreSQL analyzes a statement again when
// search_path changes), so it serves a few distinct statements: past
// maxCoalescedStatements on a connection, new ones go through
// InTenantBatch. It needs the statement cache (pgx's default query exec
// mode, or cache_describe): with default_query_exec_mode exec or
// simple_protocol (PgBouncer in transaction mode) every unit goes through
// InTenantBatch. A pool that ConfigurePool did not configure is not
// coalesced either.
//
// The zero value is not usable; a Coalescer is safe for concurrent use and
// holds no connection between round trips.
type Coalescer struct {
	opts CoalescerOptions

	mu     sync.Mutex
	queues map[*pgxpool.Pool]*unitQueue
}

// CoalescerOptions configure a Coalescer. Zero values take the defaults.
type CoalescerOptions struct {
	// MaxUnits caps the units of one round trip (default 64).
	MaxUnits int
	// MaxInFlight caps the round trips in flight per pool, each on a
	// connection of its own (default 2).
	MaxInFlight int
	// LockWait is how long a unit inside a shared round trip waits for a
	// lock before it runs again on its own (default 100 ms).
	LockWait time.Duration
	// NoDeadline is how long a round trip may take when no unit in it has
	// a deadline (default 1 minute).
	NoDeadline time.Duration
}

// NewCoalescer returns a Coalescer with opts.
func NewCoalescer(opts CoalescerOptions) *Coalescer {
	if opts.MaxUnits <= 0 {
		opts.MaxUnits = 64
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 2
	}
	if opts.LockWait <= 0 {
		opts.LockWait = 100 * time.Millisecond
	}
	if opts.NoDeadline <= 0 {
		opts.NoDeadline = time.Minute
	}
	return &Coalescer{opts: opts, queues: make(map[*pgxpool.Pool]*unitQueue)}
}

// maxCoalescedStatements is how many distinct statements the coalescer
// prepares on one connection.
const maxCoalescedStatements = 64

// unitQueue is one pool's waiting units and its round trips in flight.
type unitQueue struct {
	units  []*coalescedUnit
	active int
}

// coalescedUnit is one caller's unit of work.
type coalescedUnit struct {
	ctx    context.Context
	tenant tenantctx.Tenant
	quoted string
	q      *pgx.QueuedQuery

	done chan struct{}
	// mu guards what the caller and the round trip share: the caller sets
	// abandoned when its ctx ends first; the round trip runs the callback
	// only while not abandoned, and sets finished with the outcome.
	mu         sync.Mutex
	abandoned  bool
	finished   bool
	err        error
	retryAlone bool
}

// InTenantBatch runs b like the package's InTenantBatch, in a round trip
// shared with other callers' units when b holds one statement (see
// Coalescer). A nil Coalescer is the package's InTenantBatch.
func (c *Coalescer) InTenantBatch(ctx context.Context, pool *pgxpool.Pool, b *pgx.Batch) error {
	if c == nil || !c.coalescable(pool, b) {
		return InTenantBatch(ctx, pool, b)
	}
	t, err := tenantFrom(ctx, "in tenant")
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("in tenant %s: %w", t.ID, err)
	}
	u := &coalescedUnit{ctx: ctx, tenant: t, quoted: pgx.Identifier{t.Schema}.Sanitize(), q: b.QueuedQueries[0], done: make(chan struct{})}
	c.submit(pool, u)
	select {
	case <-u.done:
	case <-ctx.Done():
		u.mu.Lock()
		if !u.finished {
			u.abandoned = true
			u.mu.Unlock()
			return fmt.Errorf("in tenant %s: %w", t.ID, ctx.Err())
		}
		u.mu.Unlock()
	}
	if u.retryAlone {
		return InTenantBatch(ctx, pool, &pgx.Batch{QueuedQueries: []*pgx.QueuedQuery{{SQL: u.q.SQL, Arguments: u.q.Arguments, Fn: u.q.Fn}}})
	}
	return causedByDone(ctx, u.err)
}

// coalescable reports whether b can share a round trip on pool.
func (c *Coalescer) coalescable(pool *pgxpool.Pool, b *pgx.Batch) bool {
	if b == nil || len(b.QueuedQueries) != 1 {
		return false
	}
	switch pool.Config().ConnConfig.DefaultQueryExecMode {
	case pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe:
	default:
		return false
	}
	return !mayTouchSession(b.QueuedQueries[0].SQL)
}

// sessionWords are what a statement names when it may change the session
// or the transaction beyond its own effects: such a statement is not put
// in a round trip shared with other tenants' units. Words that merely
// contain one (a column "attempts" has "temp") only cost the sharing.
var sessionWords = []string{
	"set_config", "temp", "role", "authorization", "prepare", "advisory_lock", "listen",
	"declare", "begin", "commit", "rollback", "savepoint", "discard", "reset", "session", "transaction",
}

// mayTouchSession reports whether sql names one of sessionWords or starts
// with SET (SET search_path, SET ROLE).
func mayTouchSession(sql string) bool {
	for _, w := range sessionWords {
		if containsFold(sql, w) {
			return true
		}
	}
	s := strings.TrimLeft(sql, " \t\r\n(")
	return len(s) >= 3 && strings.EqualFold(s[:3], "set")
}

// submit queues u and starts a round trip when fewer than MaxInFlight of
// the pool's are in flight.
func (c *Coalescer) submit(pool *pgxpool.Pool, u *coalescedUnit) {
	c.mu.Lock()
	q := c.queues[pool]
	if q == nil {
		q = &unitQueue{}
		c.queues[pool] = q
	}
	q.units = append(q.units, u)
	if q.active >= c.opts.MaxInFlight {
		c.mu.Unlock()
		return
	}
	q.active++
	units := c.takeLocked(q)
	c.mu.Unlock()
	go c.run(pool, q, units)
}

// takeLocked removes up to MaxUnits units from q.
func (c *Coalescer) takeLocked(q *unitQueue) []*coalescedUnit {
	n := min(len(q.units), c.opts.MaxUnits)
	units := q.units[:n:n]
	q.units = q.units[n:]
	if len(q.units) == 0 {
		q.units = nil
	}
	return units
}

// run sends round trips until the pool's queue is empty.
func (c *Coalescer) run(pool *pgxpool.Pool, q *unitQueue, units []*coalescedUnit) {
	for {
		later := c.roundTrip(pool, units)
		c.mu.Lock()
		if len(later) > 0 {
			q.units = append(later, q.units...)
		}
		if len(q.units) == 0 {
			q.active--
			if q.active == 0 {
				delete(c.queues, pool)
			}
			c.mu.Unlock()
			return
		}
		units = c.takeLocked(q)
		c.mu.Unlock()
	}
}

// finish ends u with err (unless it ended already).
func (u *coalescedUnit) finish(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.finished {
		return
	}
	u.finished, u.err = true, err
	close(u.done)
}

// Statement names of the coalescer on a connection.
const (
	coalescedPinName    = "tw_unit_pin"
	coalescedVerifyName = "tw_unit_verify"
)

// coalescedPinSQL is the pin of a unit in a shared round trip: ownedPinSQL
// ($1-$3) when the session is clean, otherwise an error (the cast of a
// text to int4; built from current_setting so that the planner cannot
// fold it); then statement_timeout ($4, milliseconds; empty: the
// session's) and lock_timeout ($5, milliseconds) until the unit ends.
const coalescedPinSQL = "SELECT CASE WHEN pg_catalog.current_setting('search_path') IN ('', '\"\"')" +
	" AND pg_catalog.pg_my_temp_schema() = 0 AND current_user = session_user THEN " +
	"(" + ownedPinExpr + ")" +
	" ELSE ('tenantworker: an earlier unit left this session unclean; nothing of this unit ran'" +
	" || pg_catalog.left(pg_catalog.current_setting('search_path'), 0))::pg_catalog.int4::pg_catalog.text END," +
	" pg_catalog.set_config('statement_timeout', CASE WHEN $4 = '' THEN pg_catalog.current_setting('statement_timeout') ELSE $4 END, true)," +
	" pg_catalog.set_config('lock_timeout', $5, true)"

// unitStatements is what the coalescer prepared on one connection: the
// description of each statement by its SQL. Only the goroutine holding the
// connection uses it.
type unitStatements struct {
	ready bool // the pin and the check are prepared
	stmts map[string]*pgconn.StatementDescription
}

// statementName is the name of a unit's statement on a connection.
func statementName(sql string) string {
	sum := sha256.Sum256([]byte(sql))
	return "tw_unit_" + hex.EncodeToString(sum[:20])
}

// sent is a unit in a round trip.
type sent struct{ u *coalescedUnit }

// roundTrip runs units in one round trip on a connection of pool. It
// returns the units left for the next one: those whose statement another
// unit of this round trip prepares.
func (c *Coalescer) roundTrip(pool *pgxpool.Pool, units []*coalescedUnit) (later []*coalescedUnit) {
	var live []*coalescedUnit
	deadline := time.Time{}
	for _, u := range units {
		if err := u.ctx.Err(); err != nil {
			u.finish(fmt.Errorf("in tenant %s: %w", u.tenant.ID, err))
			continue
		}
		d, ok := u.ctx.Deadline()
		if !ok {
			d = time.Now().Add(c.opts.NoDeadline)
		}
		if d.After(deadline) {
			deadline = d
		}
		live = append(live, u)
	}
	if len(live) == 0 {
		return nil
	}
	// A second beyond the last deadline: the server's statement_timeout
	// cancels first and its error comes back.
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(time.Second))
	defer cancel()
	failAll := func(us []*coalescedUnit, err error) {
		for _, u := range us {
			u.finish(fmt.Errorf("in tenant %s: %w", u.tenant.ID, err))
		}
	}
	pc, err := pool.Acquire(ctx)
	if err != nil {
		failAll(live, fmt.Errorf("acquire: %w", err))
		return nil
	}
	defer pc.Release()
	conn := pc.Conn()
	st, ok := stateOf(conn)
	if !ok {
		// Not a configured pool: no clean-connection state to keep.
		for _, u := range live {
			u.retryAlone = true
			u.finish(nil)
		}
		return nil
	}
	if st.units == nil {
		st.units = &unitStatements{stmts: make(map[string]*pgconn.StatementDescription)}
	}
	us := st.units
	pg := conn.PgConn()
	if !us.ready {
		for name, sql := range map[string]string{coalescedPinName: coalescedPinSQL, coalescedVerifyName: verifyUnitSQL} {
			if _, err := pg.Prepare(ctx, name, sql, nil); err != nil {
				_ = conn.Close(ctx)
				failAll(live, fmt.Errorf("prepare the unit statements: %w", err))
				return nil
			}
		}
		us.ready = true
	}

	var eqb pgx.ExtendedQueryBuilder
	m := conn.TypeMap()
	pipe := pg.StartPipeline(ctx)
	var out []sent
	preparing := map[string]bool{}
	for _, u := range live {
		sql := u.q.SQL
		sd := us.stmts[sql]
		prepare := false
		if sd == nil {
			if preparing[sql] {
				// Prepared by an earlier unit of this round trip: the next
				// one has it.
				later = append(later, u)
				continue
			}
			if len(us.stmts) >= maxCoalescedStatements {
				u.retryAlone = true
				u.finish(nil)
				continue
			}
			prepare, preparing[sql] = true, true
		}
		if err := eqb.Build(m, sd, u.q.Arguments); err != nil {
			u.finish(fmt.Errorf("in tenant %s: %w", u.tenant.ID, err))
			continue
		}
		timeout, lockWait := "", c.opts.LockWait
		if d := deadlineTimeout(u.ctx); d > 0 {
			timeout = strconv.FormatInt(timeoutMillis(d), 10)
			lockWait = min(lockWait, d)
		}
		pipe.SendQueryPrepared(coalescedPinName, [][]byte{
			[]byte(u.quoted), []byte(u.tenant.Schema), []byte(ownerComment(u.tenant)),
			[]byte(timeout), []byte(strconv.FormatInt(timeoutMillis(lockWait), 10)),
		}, nil, nil)
		if prepare {
			pipe.SendPrepare(statementName(sql), sql, nil)
			pipe.SendQueryPrepared(statementName(sql), eqb.ParamValues, eqb.ParamFormats, nil)
		} else {
			pipe.SendQueryPrepared(sd.Name, eqb.ParamValues, eqb.ParamFormats, eqb.ResultFormats)
		}
		pipe.SendPipelineSync()
		out = append(out, sent{u: u})
	}
	if len(out) == 0 {
		_ = pipe.Close()
		return later
	}
	pipe.SendQueryPrepared(coalescedVerifyName, nil, nil, nil)
	pipe.SendPipelineSync()
	pending := make([]*coalescedUnit, len(out))
	for i, s := range out {
		pending[i] = s.u
	}
	if err := pipe.Flush(); err != nil {
		failAll(pending, err)
		return later
	}

	// A unit that left a transaction open: it and every later unit ran in
	// it, and it is never committed.
	var leftOpen error
	broken := false
	for i, s := range out {
		err := c.readUnit(pipe, us, m, s)
		if err != nil && !isPgError(err) {
			// The connection failed: what happened to this unit and the
			// rest is unknown.
			failAll(pending[i:], err)
			_ = conn.Close(ctx)
			return later
		}
		if leftOpen == nil && pg.TxStatus() != 'I' {
			leftOpen = errors.New("a unit of the shared round trip left a transaction open; it was not committed")
		}
		switch {
		case leftOpen != nil:
			err = leftOpen
		case pgCode(err) == "55P03": // lock_not_available: waited LockWait
			s.u.retryAlone, err = true, nil
		case pgCode(err) == "26000":
			// A statement of ours is gone (a DISCARD ALL in a function, say):
			// what the connection holds is unknown, so it goes.
			broken = true
		}
		if err != nil {
			err = fmt.Errorf("in tenant %s: %w", s.u.tenant.ID, err)
		}
		s.u.finish(err)
	}
	clean := leftOpen == nil && !broken && c.readVerify(pipe, conn)
	if err := pipe.Close(); err != nil || !clean || pg.TxStatus() != 'I' {
		_ = conn.Close(ctx)
		return later
	}
	markVerified(conn)
	return later
}

// readUnit reads one unit's results up to its Sync: the pin, the
// description when its statement was prepared, and the statement's result,
// on which it runs the unit's callback (unless its caller gave up). It
// returns the unit's first error.
func (c *Coalescer) readUnit(pipe *pgconn.Pipeline, us *unitStatements, m *pgtype.Map, s sent) error {
	var first error
	step := 0 // 0: the pin; then the description (when prepared); then the statement
	for {
		res, err := pipe.GetResults()
		if err != nil {
			if !isPgError(err) {
				return err
			}
			if first == nil {
				first = err
			}
			continue
		}
		switch r := res.(type) {
		case *pgconn.PipelineSync:
			return first
		case *pgconn.StatementDescription:
			// The pipeline's description names no statement.
			r.Name, r.SQL = statementName(s.u.q.SQL), s.u.q.SQL
			us.stmts[s.u.q.SQL] = r
			step++
		case *pgconn.ResultReader:
			if step == 0 {
				_, err = r.Close()
			} else {
				err = runCallback(s.u, r, m)
			}
			step++
			if err != nil && first == nil {
				first = err
			}
		case nil:
			return errors.New("shared round trip: results ended before the unit's sync")
		}
	}
}

// runCallback runs u's callback on the result r, unless u's caller gave
// up, and reads what the callback left of r.
func runCallback(u *coalescedUnit, r *pgconn.ResultReader, m *pgtype.Map) error {
	var err error
	u.mu.Lock()
	if !u.abandoned && u.q.Fn != nil {
		err = u.q.Fn(&unitResults{rr: r, m: m})
	}
	u.mu.Unlock()
	if _, cerr := r.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// readVerify reads the round trip's clean-connection check and its Sync,
// and reports whether the session is clean.
func (c *Coalescer) readVerify(pipe *pgconn.Pipeline, conn *pgx.Conn) bool {
	clean := false
	for {
		res, err := pipe.GetResults()
		if err != nil {
			if !isPgError(err) {
				return false
			}
			continue
		}
		switch r := res.(type) {
		case *pgconn.ResultReader:
			rows := pgx.RowsFromResultReader(conn.TypeMap(), r)
			var path, user string
			var noTemp bool
			if rows.Next() && rows.Scan(&path, &noTemp, &user) == nil {
				clean = cleanSession(path, noTemp, user, loginOf(conn)) == nil
			}
			rows.Close()
			if rows.Err() != nil {
				clean = false
			}
		case *pgconn.PipelineSync:
			return clean
		case nil:
			return false
		}
	}
}

// isPgError reports whether err is the server's answer to a statement
// (the connection is still usable), not a failure of the connection.
func isPgError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr)
}

// pgCode returns the SQLSTATE of err, or "".
func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// unitResults is the pgx.BatchResults a unit's callback reads its one
// result from.
type unitResults struct {
	rr *pgconn.ResultReader
	m  *pgtype.Map
}

func (r *unitResults) Exec() (pgconn.CommandTag, error) { return r.rr.Close() }

func (r *unitResults) Query() (pgx.Rows, error) { return pgx.RowsFromResultReader(r.m, r.rr), nil }

func (r *unitResults) QueryRow() pgx.Row {
	return unitRow{rows: pgx.RowsFromResultReader(r.m, r.rr)}
}

// Tx is nil: a unit's batch begins no transaction of its own.
func (r *unitResults) Tx() pgx.Tx { return nil }

func (r *unitResults) Close() error {
	_, err := r.rr.Close()
	return err
}

// unitRow is pgx.Row over a unit's result, as pgx's own: the first row,
// pgx.ErrNoRows when there is none.
type unitRow struct{ rows pgx.Rows }

func (r unitRow) Scan(dest ...any) error {
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}
