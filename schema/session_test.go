package schema

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/invoicing/tenantworker/tenantctx"
)

// TestSessionStateDoesNotReachTheNextTenant: a unit that leaves a role
// (SET ROLE, SET SESSION AUTHORIZATION), a WITH HOLD cursor or a LISTEN on
// its session gets its connection closed, not reused: the next tenant's
// unit runs as the login role, on a session without the cursor that
// listens on nothing.
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
	if _, err := b.pool.Exec(ctx, `CREATE ROLE acme_role_session_test; GRANT USAGE ON SCHEMA tenant_acme TO acme_role_session_test`); err != nil {
		t.Fatal(err)
	}
	for name, stmt := range map[string]string{
		"a role":   "SET ROLE acme_role_session_test",
		"a cursor": "DECLARE left_open CURSOR WITH HOLD FOR SELECT 1",
		"a listen": "LISTEN acme_events",
		// Changes session_user and current_user alike (a superuser login).
		"a session authorization": "SET SESSION AUTHORIZATION acme_role_session_test",
	} {
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
			{"InTenantBatch", func(ctx context.Context) error {
				var batch pgx.Batch
				batch.Queue(stmt)
				return InTenantBatch(ctx, b.pool, &batch)
			}},
		} {
			if err := run.run(tenantCtx(ctx, "tenant_acme")); err != nil {
				t.Fatalf("%s leaving %s: %v", run.name, name, err)
			}
			var user string
			var cursors, channels int
			err := InTenant(tenantCtx(ctx, "tenant_globex"), b.pool, func(ctx context.Context, tx pgx.Tx) error {
				return tx.QueryRow(ctx, "SELECT current_user::text, (SELECT count(*) FROM pg_catalog.pg_cursors WHERE name <> '')"+
					", (SELECT count(*) FROM pg_catalog.pg_listening_channels())").Scan(&user, &cursors, &channels)
			})
			if err != nil || user != login || cursors != 0 || channels != 0 {
				t.Fatalf("after %s left %s: the next tenant's unit ran as %q with %d cursors open, listening on %d channels (%v); want %q and none",
					run.name, name, user, cursors, channels, err, login)
			}
		}
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
		if err := b.pool.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND NOT granted)").Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	if err := creating.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	want42P01("InTenantBatch waiting for the lock", n, <-done)
}
