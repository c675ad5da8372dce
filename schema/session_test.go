package schema

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestSessionStateDoesNotReachTheNextTenant: a unit that leaves a role
// (SET ROLE, SET SESSION AUTHORIZATION), a WITH HOLD cursor, a LISTEN, an
// SQL prepared statement or a session-level advisory lock on its session
// gets its connection closed, not reused: the next tenant's unit runs as
// the login role, on a session without the cursor that listens on
// nothing, holds no statement it could EXECUTE and no advisory lock. So
// does a unit that sends the statement in a savepoint, on the raw
// connection of its transaction, or in the second round trip of
// InTenantBatches, whatever the case of its letters.
func TestSessionStateDoesNotReachTheNextTenant(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	migrateTenant(t, b.pool, "tenant_acme")
	migrateTenant(t, b.pool, "tenant_globex")
	var login string
	if err := b.pool.QueryRow(ctx, "SELECT session_user::text").Scan(&login); err != nil {
		t.Fatal(err)
	}
	// Roles are cluster-wide, and the server outlives the test's database:
	// a fixed name made the next run of the test (go test -count=2) fail
	// with "role already exists". A name of the run's own, dropped after.
	role := pgx.Identifier{"acme_role_" + strings.ToLower(tenantctx.NewID()[3:])}.Sanitize()
	if _, err := b.pool.Exec(ctx, `CREATE ROLE `+role+`; GRANT USAGE ON SCHEMA tenant_acme TO `+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, stmt := range []string{`DROP OWNED BY ` + role, `DROP ROLE ` + role} {
			if _, err := b.pool.Exec(context.Background(), stmt); err != nil {
				t.Errorf("%s: %v", stmt, err)
			}
		}
	})
	statements := []struct{ name, sql string }{
		{"a role", "SET ROLE " + role},
		{"a cursor", "DECLARE left_open CURSOR WITH HOLD FOR SELECT 1"},
		{"a listen", "LISTEN acme_events"},
		{"a prepared statement", "PREPARE acme_customers AS SELECT name FROM customers"},
		{"a prepared statement in upper case", "PREPARE ACME_UPPER AS SELECT 1"},
		{"a prepared statement of a DO block", "DO $$ BEGIN EXECUTE 'prepare acme_do AS SELECT 1'; END $$"},
		{"an advisory lock", "SELECT pg_catalog.pg_advisory_lock(4242)"},
		{"a shared advisory lock tried in upper case", "SELECT PG_TRY_ADVISORY_LOCK_SHARED(4243::bigint)"},
		// Changes session_user and current_user alike (a superuser login).
		{"a session authorization", "SET SESSION AUTHORIZATION " + role},
	}
	for _, st := range statements {
		stmt := st.sql
		for _, run := range []struct {
			name string
			run  func(ctx context.Context) error
		}{
			{"InTenant", func(ctx context.Context) error {
				return InTenant(ctx, b.pool, func(ctx context.Context, tx pgx.Tx) error {
					_, err := tx.Exec(ctx, stmt)
					return err
				})
			}},
			{"InTenant in a savepoint", func(ctx context.Context) error {
				return InTenant(ctx, b.pool, func(ctx context.Context, tx pgx.Tx) error {
					sp, err := tx.Begin(ctx)
					if err != nil {
						return err
					}
					nested, err := sp.Begin(ctx)
					if err != nil {
						return err
					}
					if _, err := nested.Exec(ctx, stmt); err != nil {
						return err
					}
					if err := nested.Commit(ctx); err != nil {
						return err
					}
					return sp.Commit(ctx)
				})
			}},
			{"InTenant on the raw connection", func(ctx context.Context) error {
				return InTenant(ctx, b.pool, func(ctx context.Context, tx pgx.Tx) error {
					_, err := tx.Conn().Exec(ctx, stmt)
					return err
				})
			}},
			{"InTenantBatch", func(ctx context.Context) error {
				var batch pgx.Batch
				batch.Queue(stmt)
				return InTenantBatch(ctx, b.pool, &batch)
			}},
			{"InTenantBatches' second round trip", func(ctx context.Context) error {
				var first pgx.Batch
				first.Queue("SELECT 1")
				return InTenantBatches(ctx, b.pool, &first, func(context.Context) (*pgx.Batch, error) {
					var last pgx.Batch
					last.Queue(stmt)
					return &last, nil
				})
			}},
		} {
			if err := run.run(tenantCtx(ctx, "tenant_acme")); err != nil {
				t.Fatalf("%s leaving %s: %v", run.name, st.name, err)
			}
			var user string
			var cursors, channels, prepared, locks int
			err := InTenant(tenantCtx(ctx, "tenant_globex"), b.pool, func(ctx context.Context, tx pgx.Tx) error {
				return tx.QueryRow(ctx, "SELECT current_user::text, (SELECT count(*) FROM pg_catalog.pg_cursors WHERE name <> '')"+
					", (SELECT count(*) FROM pg_catalog.pg_listening_channels())"+
					", (SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE from_sql)"+
					", (SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid() AND classid::bigint <> $1)", int64(existenceLockNamespace)).
					Scan(&user, &cursors, &channels, &prepared, &locks)
			})
			if err != nil || user != login || cursors != 0 || channels != 0 || prepared != 0 || locks != 0 {
				t.Errorf("after %s left %s: the next tenant's unit ran as %q with %d cursors open, listening on %d channels, "+
					"with %d SQL prepared statements and %d advisory locks (%v); want %q and none",
					run.name, st.name, user, cursors, channels, prepared, locks, err, login)
			}
		}
	}
}

// TestMayLeaveSessionState: the statements that may leave a prepared
// statement or a session-level advisory lock get the full check; the
// transaction-level locks and the statements of this module's units do
// not pay for it.
func TestMayLeaveSessionState(t *testing.T) {
	t.Parallel()
	for _, sql := range []string{
		"PREPARE x AS SELECT 1", "prepare x AS SELECT 1", "pRePaRe x (int) AS SELECT $1",
		"DO $$ BEGIN EXECUTE 'PREPARE y AS SELECT 1'; END $$",
		"SELECT pg_advisory_lock(1)", "SELECT pg_catalog.pg_advisory_lock_shared(1, 2)",
		"SELECT pg_try_advisory_lock(1)", "SELECT PG_TRY_ADVISORY_LOCK_SHARED(1)",
		"SELECT prepared_at FROM t", // a false match costs the full check only
	} {
		if !mayLeaveSessionState(sql) {
			t.Errorf("mayLeaveSessionState(%q) = false, want true", sql)
		}
	}
	for _, sql := range []string{
		"", "SELECT 1", sharedLockSQL, lockSQL, genericPlansSQL, pinSQL, ownedPinSQL, statementTimeoutSQL,
		"SELECT pg_advisory_xact_lock(1)", "SELECT pg_try_advisory_xact_lock_shared(1)",
		"SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))",
		"SELECT pg_advisory_unlock(1)", "PREPAR", "ADVISORY_LOC",
	} {
		if mayLeaveSessionState(sql) {
			t.Errorf("mayLeaveSessionState(%q) = true, want false", sql)
		}
	}
}

// TestProtocolPreparedStatementsKeepTheConnection: the statements pgx
// prepares itself (its statement cache, from_sql false in
// pg_prepared_statements) are no session state of a unit: units of
// InTenant and InTenantBatch with parameters, and a transaction-level
// advisory lock, keep their connection.
func TestProtocolPreparedStatementsKeepTheConnection(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	migrateTenant(t, b.pool, "tenant_acme")
	migrateTenant(t, b.pool, "tenant_globex")
	var pids []uint32
	var cached int
	for i, schemaName := range []string{"tenant_acme", "tenant_globex", "tenant_acme"} {
		var pid uint32
		var batch pgx.Batch
		batch.Queue("SELECT pg_catalog.pg_advisory_xact_lock($1::bigint)", int64(4244+i))
		batch.Queue("SELECT count(*) FROM customers WHERE name <> $1", "nobody").QueryRow(func(row pgx.Row) error {
			var n int
			return row.Scan(&n)
		})
		if err := InTenantBatch(tenantCtx(ctx, schemaName), b.pool, &batch); err != nil {
			t.Fatal(err)
		}
		err := InTenant(tenantCtx(ctx, schemaName), b.pool, func(ctx context.Context, tx pgx.Tx) error {
			return tx.QueryRow(ctx, "SELECT pg_catalog.pg_backend_pid(), (SELECT count(*) FROM pg_catalog.pg_prepared_statements"+
				" WHERE NOT from_sql AND $1::int > 0)", 1).Scan(&pid, &cached)
		})
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if cached == 0 {
		t.Fatalf("pgx prepared no statement on the connection: the test checks nothing")
	}
	if pids[0] != pids[1] || pids[1] != pids[2] {
		t.Errorf("backend pids %v: a connection holding only pgx's own %d prepared statements was replaced", pids, cached)
	}
}

// TestUnitOfAnotherOwnerReachesNoTable: a schema records the tenant it
// was created for; a unit of another tenant with the same schema name (a
// deleted tenant's late work after its slug went to a new tenant) is
// pinned to nothing, so its statements find no table, through InTenant and
// InTenantBatch alike. The owner's units, and any tenant's units on a
// schema that records no owner, run as before.
func TestUnitOfAnotherOwnerReachesNoTable(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	ctx := context.Background()
	const owner, other = "tn_ownerxxxxxxxxxxxxxxxxxxxxx", "tn_otherxxxxxxxxxxxxxxxxxxxxx"
	if _, err := MigrateWith(ctx, b.pool, "tenant_reused", MigrateOptions{Create: &Creation{Owner: owner}}); err != nil {
		t.Fatal(err)
	}
	migrateTenant(t, b.pool, "tenant_legacy") // records no owner
	as := func(id, schemaName string) context.Context {
		return tenantctx.WithTenant(ctx, tenantctx.Tenant{ID: id, Slug: "s", Schema: schemaName, Status: tenantctx.StatusActive})
	}
	count := func(ctx context.Context) (n int, err error) {
		err = InTenant(ctx, b.pool, func(ctx context.Context, tx pgx.Tx) error {
			return tx.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n)
		})
		return n, err
	}
	countBatch := func(ctx context.Context) (n int, err error) {
		var batch pgx.Batch
		batch.Queue("SELECT count(*) FROM customers").QueryRow(func(row pgx.Row) error { return row.Scan(&n) })
		return n, InTenantBatch(ctx, b.pool, &batch)
	}
	for name, run := range map[string]func(context.Context) (int, error){"InTenant": count, "InTenantBatch": countBatch} {
		if _, err := run(as(owner, "tenant_reused")); err != nil {
			t.Errorf("%s: the owner's unit: %v", name, err)
		}
		if _, err := run(as(other, "tenant_legacy")); err != nil {
			t.Errorf("%s: a unit on a schema without owner: %v", name, err)
		}
		_, err := run(as(other, "tenant_reused"))
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42P01" {
			t.Errorf("%s: another tenant's unit on the owner's schema: %v, want relation does not exist", name, err)
		}
	}
}

// TestUnitPinnedOnAMissingSchemaReachesNoTable: a unit pinned while its
// schema does not exist (dropped with its tenant) pins nothing, so a
// schema of that name created after the pin for a new owner (the slug's
// next tenant) stays out of its reach: its statements find no table,
// through InTenant, InTenantBatches and a unit whose pin waits for the
// tenant's shared lock while the new owner's creation holds it.
func TestUnitPinnedOnAMissingSchemaReachesNoTable(t *testing.T) {
	t.Parallel()
	b := setup(t, 4)
	ctx := context.Background()
	const late, owner = "tn_latexxxxxxxxxxxxxxxxxxxxxx", "tn_newownerxxxxxxxxxxxxxxxxxx"
	as := func(id string) context.Context {
		return tenantctx.WithTenant(ctx, tenantctx.Tenant{ID: id, Slug: "s", Schema: "tenant_reused", Status: tenantctx.StatusActive})
	}
	// create gives the schema to the new owner, with one customer.
	create := func() {
		t.Helper()
		if err := Drop(ctx, b.pool, "tenant_reused"); err != nil {
			t.Fatal(err)
		}
		if _, err := MigrateWith(ctx, b.pool, "tenant_reused", MigrateOptions{Create: &Creation{Owner: owner}}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.pool.Exec(ctx, "INSERT INTO tenant_reused.customers (name, email) VALUES ('new owner', 'new@example.com')"); err != nil {
			t.Fatal(err)
		}
	}
	drop := func() {
		t.Helper()
		if err := Drop(ctx, b.pool, "tenant_reused"); err != nil {
			t.Fatal(err)
		}
	}
	want42P01 := func(name string, n int, err error) {
		t.Helper()
		if pgCode(err) != "42P01" {
			t.Errorf("%s: the late unit read %d customers of the new owner (err %v), want relation does not exist", name, n, err)
		}
	}

	drop()
	var n int
	err := InTenant(as(late), b.pool, func(ctx context.Context, tx pgx.Tx) error {
		create()
		return tx.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n)
	})
	want42P01("InTenant", n, err)

	drop()
	n = 0
	err = InTenantBatches(as(late), b.pool, nil, func(ctx context.Context) (*pgx.Batch, error) {
		create()
		var last pgx.Batch
		last.Queue("SELECT count(*) FROM customers").QueryRow(func(row pgx.Row) error { return row.Scan(&n) })
		return &last, nil
	})
	want42P01("InTenantBatches", n, err)

	// The new owner's creation holds the tenant's lock, uncommitted, when
	// the late unit's pin (with QueueLockShared folded in) runs. In exec
	// mode (as behind PgBouncer) nothing is prepared before the pipeline.
	sep := "?"
	if strings.Contains(b.url, "?") {
		sep = "&"
	}
	execPool, _ := newTestPool(t, b.url+sep+"default_query_exec_mode=exec", 1, nil)
	drop()
	creating, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer creating.Rollback(ctx)
	if _, err := creating.Exec(ctx, lockSQL, lockNamespace, "tenant_reused"); err != nil {
		t.Fatal(err)
	}
	if _, err := creating.Exec(ctx, "CREATE SCHEMA tenant_reused; COMMENT ON SCHEMA tenant_reused IS '"+ownerPrefix+owner+"'; "+
		"CREATE TABLE tenant_reused.customers (name text); INSERT INTO tenant_reused.customers VALUES ('new owner')"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	n = 0
	go func() {
		ctx := as(late)
		var batch pgx.Batch
		if err := QueueLockShared(ctx, &batch); err != nil {
			done <- err
			return
		}
		batch.Queue("SELECT count(*) FROM customers").QueryRow(func(row pgx.Row) error { return row.Scan(&n) })
		done <- InTenantBatch(ctx, execPool, &batch)
	}()
	for waiting := false; !waiting; {
		select {
		case err := <-done:
			t.Fatalf("late unit ended early: %v", err)
		default:
		}
		// A session of this test's database: the server is shared.
		n, err := testenv.LockWaiters(ctx, b.pool, "", "advisory")
		if err != nil {
			t.Fatal(err)
		}
		waiting = n > 0
	}
	if err := creating.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	want42P01("InTenantBatch waiting for the lock", n, <-done)
}
