package schema

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrSchemaExists: Copy found the schema in the target database already
// (a leftover, or another tenant's); it leaves it alone.
var ErrSchemaExists = errors.New("schema already exists in the target database")

// ErrCopyMismatch: the copy's row counts or checksums differ from the
// source's.
var ErrCopyMismatch = errors.New("copied schema differs from its source")

// TableSum is a table's row count and checksum: md5 over the sorted md5s
// of its rows' text, read with fixed output settings (textSettings), so
// equal contents give equal sums on any server.
type TableSum struct {
	Table string `json:"table"`
	Rows  int64  `json:"rows"`
	MD5   string `json:"md5"`
}

// CopyResult is what Copy did.
type CopyResult struct {
	Schema  string     `json:"schema"`
	Version int        `json:"version"`
	Tables  []TableSum `json:"tables"`
}

// Rows sums the tables' rows.
func (r CopyResult) Rows() int64 {
	var n int64
	for _, t := range r.Tables {
		n += t.Rows
	}
	return n
}

// migrationsTable is the version table Migrate keeps in every schema. Copy
// creates it through Migrate, then replaces the rows that made with the
// source's (applied_at, name and checksum as the source recorded them,
// NULL where it did not); it is not among the tables checksummed.
const migrationsTable = "schema_migrations"

// Copy copies schemaName with its rows from the database of src into the
// database of dst and leaves the source as it was: BeginCopy, then
// Release. A move uses BeginCopy itself, to keep the source locked until
// its switch.
func Copy(ctx context.Context, src, dst *pgxpool.Pool, schemaName string) (CopyResult, error) {
	c, err := BeginCopy(ctx, src, dst, schemaName)
	if err != nil {
		return c.resultOrEmpty(schemaName), err
	}
	if err := c.Release(ctx); err != nil {
		return c.Result, err
	}
	return c.Result, nil
}

// Copied is a verified copy of a schema whose source is still locked
// against writes: the source's transaction stays open until DropSource,
// Release or Abort ends it, and exactly one of them must be called.
type Copied struct {
	// Result is what was copied: the version, the tables' row counts and
	// checksums (equal in the source and the copy).
	Result CopyResult

	src    pgx.Tx        // holds the source's locks
	srcDB  *pgxpool.Pool // src's pool, for DropSource after src was lost
	dst    *pgxpool.Pool
	schema string
	quoted string
	ended  bool
}

// BeginCopy copies schemaName with its rows from the database of src into
// the database of dst (typically another server), and returns with the
// source still locked, so that what was copied is what the source holds
// until the caller switches to the copy (Copied.DropSource) or gives up
// (Copied.Abort, Copied.Release).
//
// In one transaction on the source, it takes the tenant's lock in shared
// mode (a Migrate or Drop of the source waits; units of work, which take
// it shared too, do not) and every table of the schema in EXCLUSIVE mode:
// reads go on, but writes, by this service or by the application that
// owns the tables, wait until the transaction ends; then it reads the
// version. It creates the schema in dst by the normal migrations at that
// version, refusing a schema that is there already (ErrSchemaExists: left
// alone, also when a concurrent copy made it a moment earlier), and
// records the source's owner on it. Then it copies each table in
// foreign-key order with COPY ... TO STDOUT streamed into COPY ... FROM
// STDIN (pgx's CopyFrom, text format: every type round-trips exactly), in
// one target transaction, both sides with the same fixed text settings
// (textSettings: ISO dates, UTC, the postgres interval style, every float
// digit, hex bytea; SET LOCAL) whatever each server's defaults are, sets
// the sequences to the source's positions, replaces the target's
// migration records with the source's (a source that recorded other
// migrations than this release's under its versions is refused first,
// ErrMigrationMismatch), and verifies each table's row
// count and checksum (Checksums) against the source. Statements are schema-qualified: no search_path is set on
// either side.
//
// The source's transaction lifts idle_in_transaction_session_timeout for
// itself: it is idle between its statements until the caller ends it, and
// a server that ended it would release the tables' locks. It lifts
// lock_timeout too: its waits for the tenant's lock, the tables' and
// DropSource's (for the readers of the tables) last until ctx's deadline,
// not the database's or role's lock_timeout. The copy's
// transactions on both sides, and Checksums', set statement_timeout to the
// time left before ctx's deadline (none without one), overriding the
// database's or role's: a big table's COPY outlasts a guard of seconds.
//
// On failure the source's transaction is rolled back (nothing changed
// there) and the copy this call created is dropped.
func BeginCopy(ctx context.Context, src, dst *pgxpool.Pool, schemaName string) (c *Copied, err error) {
	return beginCopy(ctx, src, dst, schemaName, embedded)
}

// beginCopy is BeginCopy building the target with the migrations set
// (tests copy tables of their own).
func beginCopy(ctx context.Context, src, dst *pgxpool.Pool, schemaName string, set []Migration) (c *Copied, err error) {
	c = &Copied{srcDB: src, dst: dst, schema: schemaName, Result: CopyResult{Schema: schemaName}}
	if c.quoted, err = quoteSchema(schemaName); err != nil {
		return c, fmt.Errorf("copy schema: %w", err)
	}
	// At read committed whatever the source database's
	// default_transaction_isolation: the rows are read after the tables'
	// lock, which waits for the writes in flight; at repeatable read or
	// serializable the snapshot would be the one of the first statement
	// (the tenant's shared lock), and a write committed while the lock
	// waited would be left out of the copy, and dropped with the source.
	if c.src, err = src.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}); err != nil {
		return c, fmt.Errorf("copy schema %s: begin on the source: %w", schemaName, err)
	}
	created := false
	defer func() {
		if err == nil {
			return
		}
		c.ended = true
		_ = c.src.Rollback(context.WithoutCancel(ctx))
		if created {
			if derr := Drop(context.WithoutCancel(ctx), dst, schemaName); derr != nil {
				err = errors.Join(err, fmt.Errorf("drop the partial copy: %w", derr))
			}
		}
	}()
	// Both sides write and read values as text (COPY): with their own
	// defaults, a date the source writes as 01/03/2026 (DateStyle 'SQL,
	// DMY') would be read on a target with 'Postgres, MDY' as January 3rd,
	// or not at all.
	// The source's transaction then stays open, idle between its
	// statements, until the old schema is dropped (the target's checksums,
	// the switch, the grace period): a server's
	// idle_in_transaction_session_timeout shorter than that would end it,
	// and with it the tables' locks, so that writes that waited would
	// commit into the old schema. It is lifted for this transaction, as
	// the move lock's is. So is lock_timeout (noLockTimeout): DropSource's
	// DROP waits for the readers of the tables, and cut by a database's or
	// role's lock_timeout it would roll this transaction back, with the
	// same writes committing into the old schema.
	if _, err := c.src.Exec(ctx, textSettings+"; "+noIdleTimeout+"; "+noLockTimeout); err != nil {
		return c, fmt.Errorf("copy schema %s: settings on the source: %w", schemaName, err)
	}
	if err := setDeadlineTimeout(ctx, c.src); err != nil {
		return c, fmt.Errorf("copy schema %s: settings on the source: %w", schemaName, err)
	}
	if _, err := c.src.Exec(ctx, sharedLockSQL, lockNamespace, schemaName); err != nil {
		return c, fmt.Errorf("copy schema %s: lock the source: %w", schemaName, err)
	}
	exists, owner, err := readOwner(ctx, c.src, schemaName)
	if err != nil {
		return c, fmt.Errorf("copy schema %s: read the source's owner: %w", schemaName, err)
	}
	if !exists {
		return c, fmt.Errorf("copy schema %s: the source schema does not exist", schemaName)
	}
	if err := lockTables(ctx, c.src, c.quoted, schemaName); err != nil {
		return c, fmt.Errorf("copy schema %s: lock the source's tables: %w", schemaName, err)
	}
	version, err := readVersion(ctx, c.src, c.quoted)
	if err != nil {
		return c, fmt.Errorf("copy schema %s: read the source's version: %w", schemaName, err)
	}
	if version == 0 {
		return c, fmt.Errorf("copy schema %s: the source schema has no version", schemaName)
	}
	c.Result.Version = version
	if version <= len(set) {
		// The target is built by this release's migrations: not for a
		// source that applied other ones under the same versions.
		if err := checkRecorded(ctx, c.src, schemaName, c.quoted, set); err != nil {
			return c, fmt.Errorf("copy schema %s: %w", schemaName, err)
		}
	}

	mres, err := migrateWith(ctx, dst, schemaName, version, set, creation{allowed: true, owner: owner, fresh: true})
	// A failure after the step that created the schema committed leaves a
	// schema that is this call's (Created): the deferred drop removes it.
	created = mres.Created
	if errors.Is(err, ErrSchemaExists) {
		return c, fmt.Errorf("copy schema %s: %w", schemaName, ErrSchemaExists)
	}
	if err != nil {
		return c, fmt.Errorf("copy schema %s: create it in the target: %w", schemaName, err)
	}

	tables, err := copyOrder(ctx, c.src, schemaName)
	if err != nil {
		return c, fmt.Errorf("copy schema %s: %w", schemaName, err)
	}
	err = pgx.BeginFunc(ctx, dst, func(dstTx pgx.Tx) error {
		if _, err := dstTx.Exec(ctx, textSettings); err != nil {
			return fmt.Errorf("settings on the target: %w", err)
		}
		if err := setDeadlineTimeout(ctx, dstTx); err != nil {
			return fmt.Errorf("settings on the target: %w", err)
		}
		if _, err := dstTx.Exec(ctx, lockSQL, lockNamespace, schemaName); err != nil {
			return fmt.Errorf("lock the target: %w", err)
		}
		for _, tbl := range tables {
			if err := copyTable(ctx, c.src, dstTx, c.quoted, schemaName, tbl); err != nil {
				return err
			}
		}
		// The source's own records of its migrations, not the ones the
		// target's migration just wrote.
		if _, err := dstTx.Exec(ctx, "DELETE FROM "+c.quoted+"."+migrationsTable); err != nil {
			return fmt.Errorf("replace the target's migration records: %w", err)
		}
		if err := copyTable(ctx, c.src, dstTx, c.quoted, schemaName, migrationsTable); err != nil {
			return err
		}
		return copySequences(ctx, c.src, dstTx, c.quoted, schemaName)
	})
	if err != nil {
		return c, fmt.Errorf("copy schema %s: %w", schemaName, err)
	}
	srcSums, err := checksums(ctx, c.src, schemaName)
	if err != nil {
		return c, fmt.Errorf("copy schema %s: checksum the source: %w", schemaName, err)
	}
	dstSums, err := Checksums(ctx, dst, schemaName)
	if err != nil {
		return c, fmt.Errorf("copy schema %s: checksum the copy: %w", schemaName, err)
	}
	if !slices.Equal(srcSums, dstSums) {
		return c, fmt.Errorf("copy schema %s: %w: source %v, copy %v", schemaName, ErrCopyMismatch, srcSums, dstSums)
	}
	c.Result.Tables = srcSums
	return c, nil
}

// resultOrEmpty is c's result, for a c that may be nil.
func (c *Copied) resultOrEmpty(schemaName string) CopyResult {
	if c == nil {
		return CopyResult{Schema: schemaName}
	}
	return c.Result
}

// DropSource drops the source schema in the transaction that has held it
// locked since the copy and commits. The DROP waits for readers of the
// tables still at work (until ctx's deadline, whatever lock_timeout the
// database or role sets); the tenant's lock, held shared since the copy,
// keeps a Migrate or Drop from elsewhere out (it is not taken exclusively:
// a second copy of the tenant, waiting for the tables with the tenant's
// lock held shared, would deadlock with it). Writes that waited on the
// source's tables, and such a second copy, then fail (the tables are
// gone) instead of landing in, or reading, a schema nobody reads any more.
//
// A source transaction lost before (its backend terminated, the server
// restarted, the connection lost: in the grace period after the switch,
// say) released the tables, and writes that waited for it committed into
// the source. DropSource then locks the source's tables again in a new
// transaction and compares their checksums with the copy's (Result): the
// same, it drops the schema there; else it keeps it and returns a
// *SourceWrittenError naming the tables written since the copy, whose
// rows the copy lacks.
func (c *Copied) DropSource(ctx context.Context) error {
	if err := c.end(); err != nil {
		return err
	}
	// Whether the transaction was lost is asked before dropSource, and
	// told by the connection while this transaction still holds it: once
	// committed or rolled back, the connection is back in the pool, where
	// another caller may use it.
	var err error
	if _, serr := c.src.Exec(ctx, "SELECT 1"); serr != nil {
		closed := c.src.Conn().IsClosed()
		_ = c.src.Rollback(context.WithoutCancel(ctx))
		err = serr
		if closed && c.srcDB != nil {
			err = c.dropUnwritten(ctx, fmt.Errorf("the transaction holding its tables against writes since the copy is lost: %w", serr))
		}
	} else {
		err = c.dropSource(ctx)
	}
	if err != nil {
		return fmt.Errorf("drop source schema %s: %w", c.schema, err)
	}
	return nil
}

// SourceWrittenError: the source's transaction was lost after the copy,
// and rows of Tables in the source schema differ from the copy's since:
// writes that waited for the copy committed there. DropSource kept the
// schema.
type SourceWrittenError struct {
	Schema string
	Tables []string
	// Lost is how the source's transaction was found lost.
	Lost error
}

func (e *SourceWrittenError) Error() string {
	return fmt.Sprintf("the transaction holding the tables of schema %s against writes since the copy was lost (%v), and tables %s were written there since: "+
		"the copy lacks those writes", e.Schema, e.Lost, strings.Join(e.Tables, ", "))
}

func (e *SourceWrittenError) Unwrap() error { return e.Lost }

// dropUnwritten drops the source schema in a new transaction once the
// one that held it since the copy was lost (lost), if its tables, locked
// again, still hold what was copied (Result.Tables); else it keeps it and
// returns a *SourceWrittenError.
func (c *Copied) dropUnwritten(ctx context.Context, lost error) error {
	tx, err := c.srcDB.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return errors.Join(lost, fmt.Errorf("begin again on the source: %w", err))
	}
	c.src = tx
	err = func() error {
		if _, err := tx.Exec(ctx, noIdleTimeout+"; "+noLockTimeout); err != nil {
			return fmt.Errorf("settings on the source: %w", err)
		}
		if err := setDeadlineTimeout(ctx, tx); err != nil {
			return fmt.Errorf("settings on the source: %w", err)
		}
		if _, err := tx.Exec(ctx, sharedLockSQL, lockNamespace, c.schema); err != nil {
			return fmt.Errorf("lock the source: %w", err)
		}
		exists, _, err := readOwner(ctx, tx, c.schema)
		if err != nil {
			return fmt.Errorf("read the source's owner: %w", err)
		}
		if !exists {
			return tx.Commit(ctx) // dropped already
		}
		if err := lockTables(ctx, tx, c.quoted, c.schema); err != nil {
			return fmt.Errorf("lock the source's tables: %w", err)
		}
		sums, err := checksums(ctx, tx, c.schema)
		if err != nil {
			return fmt.Errorf("checksum the source: %w", err)
		}
		if written := changedTables(c.Result.Tables, sums); len(written) > 0 {
			return &SourceWrittenError{Schema: c.schema, Tables: written, Lost: lost}
		}
		return c.dropSource(ctx)
	}()
	if err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		var written *SourceWrittenError
		if !errors.As(err, &written) {
			err = errors.Join(lost, fmt.Errorf("again: %w", err))
		}
		return err
	}
	return nil
}

// changedTables lists the tables of was and now (by name) whose row
// count or checksum differ, or that only one of them has.
func changedTables(was, now []TableSum) []string {
	var changed []string
	for _, w := range was {
		i := slices.IndexFunc(now, func(n TableSum) bool { return n.Table == w.Table })
		if i < 0 || now[i] != w {
			changed = append(changed, w.Table)
		}
	}
	for _, n := range now {
		if !slices.ContainsFunc(was, func(w TableSum) bool { return w.Table == n.Table }) {
			changed = append(changed, n.Table)
		}
	}
	return changed
}

// dropSource is DropSource in c.src, which it commits, or rolls back on
// failure.
func (c *Copied) dropSource(ctx context.Context) error {
	err := func() error {
		// A transaction that read a table and then waited to write it
		// deadlocks with the DROP, and PostgreSQL reports it to the DROP at
		// once: rolling the source back would let that write commit into
		// the old schema. The DROP runs in a savepoint instead (the tables
		// stay locked), the transactions waiting for this one are
		// cancelled, and once they stopped waiting, the DROP runs again.
		for attempt := 0; ; attempt++ {
			sp, err := c.src.Begin(ctx)
			if err != nil {
				return err
			}
			_, err = sp.Exec(ctx, "DROP SCHEMA IF EXISTS "+c.quoted+" CASCADE")
			if err == nil {
				if err := sp.Commit(ctx); err != nil {
					return err
				}
				break
			}
			var pgErr *pgconn.PgError
			if attempt >= 10 || !errors.As(err, &pgErr) || pgErr.Code != "40P01" {
				return err
			}
			if rerr := sp.Rollback(ctx); rerr != nil {
				return errors.Join(err, rerr)
			}
			cancelled, cerr := c.cancelBlocked(ctx)
			if cerr != nil {
				var denied *pgconn.PgError
				if errors.As(cerr, &denied) && denied.Code == insufficientPrivilege {
					// A write of a role this one may not cancel: rolled
					// back, the source would let it commit into the old
					// schema. Its tables refuse writes instead, and the
					// schema stays for the operator to drop.
					if ferr := c.fence(ctx); ferr != nil {
						return errors.Join(err, cerr, ferr)
					}
					if ferr := c.src.Commit(ctx); ferr != nil {
						return errors.Join(err, cerr, ferr)
					}
					return fmt.Errorf("%w; %w: a write waiting for the move is another role's, which this one may not cancel (grant it that role or pg_signal_backend); "+
						"the old schema's tables now refuse writes (%s), drop it by hand", err, cerr, movedMessage)
				}
				return errors.Join(err, cerr)
			}
			if werr := c.waitUnblocked(ctx, cancelled); werr != nil {
				return errors.Join(err, werr)
			}
		}
		return c.src.Commit(ctx)
	}()
	if err != nil {
		_ = c.src.Rollback(context.WithoutCancel(ctx))
	}
	return err
}

// insufficientPrivilege is PostgreSQL's SQLSTATE for "permission denied",
// which pg_cancel_backend raises for another role's backend.
const insufficientPrivilege = "42501"

// movedMessage is the error of a write to the tables of a schema fenced
// off by DropSource (fence).
const movedMessage = "tenant schema moved to another database: write there"

// cancelBlocked cancels the statements of the backends that wait for the
// source's transaction and returns their pids. It runs in a savepoint, so
// that a refusal (a backend of another role: insufficientPrivilege) leaves
// the source's transaction, and its locks, as they were.
func (c *Copied) cancelBlocked(ctx context.Context) ([]int32, error) {
	sp, err := c.src.Begin(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := sp.Query(ctx, `SELECT a.pid, pg_catalog.pg_cancel_backend(a.pid) FROM pg_catalog.pg_stat_activity a
		WHERE pg_catalog.pg_backend_pid() = ANY (pg_catalog.pg_blocking_pids(a.pid))`)
	var cancelled []int32
	if err == nil {
		cancelled, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (int32, error) {
			var pid int32
			var sent bool
			err := row.Scan(&pid, &sent)
			return pid, err
		})
	}
	if err != nil {
		if rerr := sp.Rollback(ctx); rerr != nil {
			return nil, errors.Join(err, rerr)
		}
		return nil, err
	}
	return cancelled, sp.Commit(ctx)
}

// fence makes every table of the source schema refuse writes (a
// statement trigger that raises movedMessage), in the source's
// transaction, which holds the tables' EXCLUSIVE locks (a trigger takes
// the weaker SHARE ROW EXCLUSIVE): a write waiting for those locks reads
// the tables' triggers anew once it has them, and fails.
func (c *Copied) fence(ctx context.Context) error {
	fn := c.quoted + ".tenantworker_moved"
	if _, err := c.src.Exec(ctx, "CREATE OR REPLACE FUNCTION "+fn+"() RETURNS trigger LANGUAGE plpgsql AS $f$BEGIN RAISE EXCEPTION "+
		sqlLiteral(movedMessage)+" USING ERRCODE = 'object_not_in_prerequisite_state'; END$f$"); err != nil {
		return fmt.Errorf("fence the old schema: %w", err)
	}
	rows, err := c.src.Query(ctx, `SELECT c.relname FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY c.relname COLLATE "C"`, c.schema)
	if err != nil {
		return fmt.Errorf("fence the old schema: list tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("fence the old schema: list tables: %w", err)
	}
	for _, t := range tables {
		if _, err := c.src.Exec(ctx, "CREATE TRIGGER tenantworker_moved BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "+
			c.quoted+"."+pgx.Identifier{t}.Sanitize()+" FOR EACH STATEMENT EXECUTE FUNCTION "+fn+"()"); err != nil {
			return fmt.Errorf("fence the old schema: table %s: %w", t, err)
		}
	}
	return nil
}

// cancelWait bounds how long DropSource waits for the backends it
// cancelled to stop waiting for the source's transaction.
const cancelWait = 5 * time.Second

// waitUnblocked waits until none of the backends pids, which DropSource
// cancelled, waits for the source's transaction any more, or cancelWait
// has passed. A cancellation is a signal the backend acts on when it next
// runs: on a busy server the DROP, tried again at once, met the same
// waiting write again, ten times over, and gave up on a deadlock that the
// cancellation was about to end.
func (c *Copied) waitUnblocked(ctx context.Context, pids []int32) error {
	deadline := time.Now().Add(cancelWait)
	for len(pids) > 0 {
		var waiting bool
		if err := c.src.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_stat_activity a
			WHERE a.pid = ANY ($1) AND pg_catalog.pg_backend_pid() = ANY (pg_catalog.pg_blocking_pids(a.pid)))`,
			pids).Scan(&waiting); err != nil {
			return fmt.Errorf("wait for the cancelled writes: %w", err)
		}
		if !waiting || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the cancelled writes: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// Held checks that the source's transaction still holds the source's
// tables against writes: its session answers and the transaction is open.
// A transaction the server ended (its backend terminated, the server
// restarted, the connection lost) released the tables' locks, and a write
// that waited for the copy may have committed into the source since, so
// the copy no longer holds what the source does: the caller must not
// switch to it (Abort drops it). It cannot tell of a loss after it
// returns.
func (c *Copied) Held(ctx context.Context) error {
	if c.ended {
		return errors.New("schema copy already ended")
	}
	if _, err := c.src.Exec(ctx, "SELECT 1"); err != nil {
		return fmt.Errorf("source schema %s: the transaction holding its tables against writes since the copy is lost, and writes may have reached the source since: %w", c.schema, err)
	}
	return nil
}

// Release ends the source's transaction without changing anything:
// writes that waited go on, into the source. The copy stays.
func (c *Copied) Release(ctx context.Context) error {
	if err := c.end(); err != nil {
		return err
	}
	if err := c.src.Rollback(ctx); err != nil {
		return fmt.Errorf("release source schema %s: %w", c.schema, err)
	}
	return nil
}

// Abort drops the copy and ends the source's transaction without
// changing anything there.
func (c *Copied) Abort(ctx context.Context) error {
	if err := c.end(); err != nil {
		return err
	}
	rerr := c.src.Rollback(context.WithoutCancel(ctx))
	if err := Drop(context.WithoutCancel(ctx), c.dst, c.schema); err != nil {
		return errors.Join(fmt.Errorf("drop the copy of %s: %w", c.schema, err), rerr)
	}
	// A transaction whose connection is closed (lost, its backend
	// terminated) ended with it: nothing is left to release.
	if rerr != nil && !errors.Is(rerr, pgx.ErrTxClosed) && !c.src.Conn().IsClosed() {
		return fmt.Errorf("release source schema %s: %w", c.schema, rerr)
	}
	return nil
}

// end marks the copy ended, once.
func (c *Copied) end() error {
	if c.ended {
		return errors.New("schema copy already ended")
	}
	c.ended = true
	return nil
}

// lockTables locks every table of the schema (its version table too) in
// EXCLUSIVE mode in tx: reads go on, writes wait until tx ends.
func lockTables(ctx context.Context, tx pgx.Tx, quoted, schemaName string) error {
	rows, err := tx.Query(ctx, `
		SELECT c.relname FROM pg_catalog.pg_class c
		  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
		 ORDER BY c.relname COLLATE "C"`, schemaName)
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	if len(tables) == 0 {
		return nil
	}
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = quoted + "." + pgx.Identifier{t}.Sanitize()
	}
	_, err = tx.Exec(ctx, "LOCK TABLE "+strings.Join(names, ", ")+" IN EXCLUSIVE MODE")
	return err
}

// copyOrder lists the schema's tables (but the version table) so that a
// table comes after the tables its foreign keys reference; among
// independent tables, by name.
func copyOrder(ctx context.Context, q pgx.Tx, schemaName string) ([]string, error) {
	tables, err := listTables(ctx, q, schemaName)
	if err != nil {
		return nil, err
	}
	rows, err := q.Query(ctx, `
		SELECT c.relname, r.relname
		  FROM pg_catalog.pg_constraint k
		  JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
		  JOIN pg_catalog.pg_class r ON r.oid = k.confrelid
		  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		  JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
		 WHERE k.contype = 'f' AND n.nspname = $1 AND rn.nspname = $1 AND c.oid <> r.oid`, schemaName)
	if err != nil {
		return nil, fmt.Errorf("list foreign keys: %w", err)
	}
	deps := map[string][]string{}
	var from, to string
	if _, err := pgx.ForEachRow(rows, []any{&from, &to}, func() error {
		deps[from] = append(deps[from], to)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list foreign keys: %w", err)
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string) error
	visit = func(t string) error {
		switch state[t] {
		case 1:
			return fmt.Errorf("foreign keys form a cycle through %s", t)
		case 2:
			return nil
		}
		state[t] = 1
		for _, d := range deps[t] {
			if slices.Contains(tables, d) {
				if err := visit(d); err != nil {
					return err
				}
			}
		}
		state[t] = 2
		order = append(order, t)
		return nil
	}
	for _, t := range tables {
		if err := visit(t); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// listTables lists the ordinary tables of the schema but the version
// table, by name.
func listTables(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, schemaName string) ([]string, error) {
	rows, err := q.Query(ctx, `
		SELECT c.relname FROM pg_catalog.pg_class c
		  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname <> $2
		 ORDER BY c.relname COLLATE "C"`, schemaName, migrationsTable)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	return tables, nil
}

// errCopyInEnded ends the source's side of a table's copy once the
// target's has ended.
var errCopyInEnded = errors.New("copy in ended")

// copyTable streams one table from srcTx into dstTx: COPY TO STDOUT on
// the source connection piped into CopyFrom on the target's, over the
// columns that are not generated.
func copyTable(ctx context.Context, srcTx, dstTx pgx.Tx, quoted, schemaName, table string) error {
	rows, err := srcTx.Query(ctx, `
		SELECT a.attname FROM pg_catalog.pg_attribute a
		  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
		  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		 ORDER BY a.attnum`, schemaName, table)
	if err != nil {
		return fmt.Errorf("list columns of %s: %w", table, err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list columns of %s: %w", table, err)
	}
	quotedCols := make([]string, len(cols))
	for i, c := range cols {
		quotedCols[i] = pgx.Identifier{c}.Sanitize()
	}
	target := quoted + "." + pgx.Identifier{table}.Sanitize() + " (" + strings.Join(quotedCols, ", ") + ")"

	pr, pw := io.Pipe()
	outErr := make(chan error, 1)
	go func() {
		_, err := srcTx.Conn().PgConn().CopyTo(ctx, pw, "COPY "+target+" TO STDOUT")
		pw.CloseWithError(err)
		outErr <- err
	}()
	_, inErr := dstTx.Conn().PgConn().CopyFrom(ctx, pr, "COPY "+target+" FROM STDIN")
	pr.CloseWithError(errCopyInEnded)
	// A source cut off by the target's end (it refused a row, timed out,
	// went away) failed for the target's reason: that one is reported.
	if err := <-outErr; err != nil && (inErr == nil || !errors.Is(err, errCopyInEnded)) {
		return fmt.Errorf("copy %s out of the source: %w", table, err)
	}
	if inErr != nil {
		return fmt.Errorf("copy %s into the target: %w", table, inErr)
	}
	return nil
}

// copySequences sets every sequence of the schema in the target to the
// source's position.
func copySequences(ctx context.Context, srcTx, dstTx pgx.Tx, quoted, schemaName string) error {
	rows, err := srcTx.Query(ctx, `
		SELECT c.relname FROM pg_catalog.pg_class c
		  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = $1 AND c.relkind = 'S' ORDER BY c.relname COLLATE "C"`, schemaName)
	if err != nil {
		return fmt.Errorf("list sequences: %w", err)
	}
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list sequences: %w", err)
	}
	for _, seq := range seqs {
		name := quoted + "." + pgx.Identifier{seq}.Sanitize()
		var last int64
		var called bool
		if err := srcTx.QueryRow(ctx, "SELECT last_value, is_called FROM "+name).Scan(&last, &called); err != nil {
			return fmt.Errorf("read sequence %s: %w", seq, err)
		}
		if _, err := dstTx.Exec(ctx, "SELECT pg_catalog.setval($1::regclass, $2, $3)", name, last, called); err != nil {
			return fmt.Errorf("set sequence %s: %w", seq, err)
		}
	}
	return nil
}

// setDeadlineTimeout sets statement_timeout (SET LOCAL) for the rest of
// tx to the time left before ctx's deadline, or none without a deadline,
// overriding the database's or role's statement_timeout: a copy's COPY of
// a big table and its checksums outlast an operator's guard of seconds,
// which would fail the move the same way at every try.
func setDeadlineTimeout(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, statementTimeoutSQL, strconv.FormatInt(timeoutMillis(deadlineTimeout(ctx)), 10)); err != nil {
		return fmt.Errorf("set statement_timeout: %w", err)
	}
	return nil
}

// noIdleTimeout lifts idle_in_transaction_session_timeout until the end
// of the transaction (SET LOCAL).
const noIdleTimeout = "SET LOCAL idle_in_transaction_session_timeout = 0"

// noLockTimeout lifts lock_timeout until the end of the transaction (SET
// LOCAL): its lock waits end at the caller's deadline (statement_timeout).
const noLockTimeout = "SET LOCAL lock_timeout = 0"

// textSettings fix the text form of values, whatever the server's,
// database's or role's defaults (SET LOCAL: they end with the
// transaction): how COPY writes them on the source and reads them on the
// target, and the text of rows for checksums. ISO dates and times with a
// numeric offset, read the same under any DateStyle field order; the
// interval style whose text every server reads back exactly; floats with
// every digit; bytea in hex; money in the C locale.
const textSettings = `SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 3; SET LOCAL bytea_output = 'hex'; SET LOCAL lc_monetary = 'C'`

// Checksums returns every table's row count and checksum (TableSum) in
// table name order, the version table excluded.
func Checksums(ctx context.Context, pool *pgxpool.Pool, schemaName string) ([]TableSum, error) {
	if _, err := quoteSchema(schemaName); err != nil {
		return nil, fmt.Errorf("checksums: %w", err)
	}
	var sums []TableSum
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		sums, err = checksums(ctx, tx, schemaName)
		return err
	})
	return sums, err
}

// checksums is Checksums inside tx.
func checksums(ctx context.Context, tx pgx.Tx, schemaName string) ([]TableSum, error) {
	if _, err := tx.Exec(ctx, textSettings); err != nil {
		return nil, fmt.Errorf("checksum settings: %w", err)
	}
	if err := setDeadlineTimeout(ctx, tx); err != nil {
		return nil, fmt.Errorf("checksum settings: %w", err)
	}
	tables, err := listTables(ctx, tx, schemaName)
	if err != nil {
		return nil, err
	}
	quoted := pgx.Identifier{schemaName}.Sanitize()
	sums := make([]TableSum, 0, len(tables))
	for _, table := range tables {
		s := TableSum{Table: table}
		err := tx.QueryRow(ctx, `SELECT count(*), coalesce(md5(string_agg(md5(r::text), '' ORDER BY md5(r::text) COLLATE "C")), '')
			FROM `+quoted+"."+pgx.Identifier{table}.Sanitize()+` AS r`).Scan(&s.Rows, &s.MD5)
		if err != nil {
			return nil, fmt.Errorf("checksum %s: %w", table, err)
		}
		sums = append(sums, s)
	}
	return sums, nil
}
