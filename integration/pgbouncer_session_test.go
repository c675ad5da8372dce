package integration

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestSessionStateBehindPgBouncerReachesNoOtherTenant: behind PgBouncer in
// transaction pooling mode a client connection has no server connection of
// its own, so closing the one a unit left session state on (a temporary
// table, which unqualified names find before any schema; a role; a WITH
// HOLD cursor; a session search_path; an SQL prepared statement, which a
// rollback keeps) does not end that state: PgBouncer hands the server
// session to its next client. The unit's end check runs on that server
// session and ends it, so the next tenant's unit, on a client connection
// opened before, finds none of it. Before, a unit of the next tenant read
// the first one's temporary table, and every new connection was refused
// until PgBouncer retired the server connection.
func TestSessionStateBehindPgBouncerReachesNoOtherTenant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := testenv.Postgres(t)
	emptySearchPathDefault(t, dbURL)
	b := startPgBouncer(t, dbURL, 1) // one server connection: every client gets it
	pool, err := schema.NewPool(ctx, b.url(databaseName(t, dbURL)), schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	direct, err := schema.NewPool(ctx, dbURL, schema.PoolOptions{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(direct.Close) // after the role's cleanup below
	tenant := func(slug string) context.Context {
		return tenantctx.WithTenant(ctx, tenantctx.Tenant{ID: "tn_" + slug, Slug: slug, Name: slug,
			Status: tenantctx.StatusActive, Schema: tenantctx.SchemaForSlug(slug)})
	}
	for _, slug := range []string{"acme", "globex"} {
		if _, err := schema.Migrate(ctx, direct, tenantctx.SchemaForSlug(slug), 0); err != nil {
			t.Fatal(err)
		}
	}
	var login string
	if err := direct.QueryRow(ctx, "SELECT session_user::text").Scan(&login); err != nil {
		t.Fatal(err)
	}
	// A role of the run's own (roles are cluster-wide), without the
	// login's rights.
	role := pgx.Identifier{"acme_role_" + strings.ToLower(tenantctx.NewID()[3:])}.Sanitize()
	if _, err := direct.Exec(ctx, "CREATE ROLE "+role+"; GRANT USAGE ON SCHEMA tenant_acme TO "+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, stmt := range []string{"DROP OWNED BY " + role, "DROP ROLE " + role} {
			if _, err := direct.Exec(context.Background(), stmt); err != nil {
				t.Errorf("%s: %v", stmt, err)
			}
		}
	})

	// warm opens the pool's two client connections, both proven clean, so
	// that the next tenant's unit runs on one opened before the leak.
	warm := func() {
		var conns []*pgxpool.Conn
		for range 2 {
			c, err := pool.Acquire(ctx)
			if err != nil {
				t.Fatalf("acquire: %v", err)
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.Release()
		}
	}
	errFailed := errors.New("the unit fails")
	for _, leak := range []struct {
		name, sql string
		batch     bool  // InTenantBatch instead of InTenant
		fail      error // fn's error: the unit rolls back
	}{
		{name: "a temporary table", sql: "CREATE TEMP TABLE customers AS SELECT 'acme''s secret'::text AS name"},
		{name: "a temporary table (batch)", sql: "CREATE TEMP TABLE customers AS SELECT 'acme''s secret'::text AS name", batch: true},
		{name: "a role", sql: "SET ROLE " + role},
		{name: "a cursor", sql: "DECLARE acme_cursor CURSOR WITH HOLD FOR SELECT 1"},
		{name: "a search_path", sql: "SET search_path = tenant_acme"},
		{name: "a prepared statement, rolled back", sql: "PREPARE acme_statement AS SELECT 1", fail: errFailed},
	} {
		warm()
		var err error
		if leak.batch {
			var batch pgx.Batch
			batch.Queue(leak.sql)
			err = schema.InTenantBatch(tenant("acme"), pool, &batch)
		} else {
			err = schema.InTenant(tenant("acme"), pool, func(ctx context.Context, tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, leak.sql); err != nil {
					return err
				}
				return leak.fail
			})
		}
		if err != leak.fail {
			t.Fatalf("acme's unit leaving %s: err = %v, want %v", leak.name, err, leak.fail)
		}
		var names []string
		var user string
		var cursors, prepared int
		err = schema.InTenant(tenant("globex"), pool, func(ctx context.Context, tx pgx.Tx) error {
			rows, err := tx.Query(ctx, "SELECT name FROM customers")
			if err != nil {
				return err
			}
			if names, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				return err
			}
			return tx.QueryRow(ctx, "SELECT current_user::text, (SELECT count(*) FROM pg_catalog.pg_cursors WHERE name <> ''),"+
				" (SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE from_sql)").Scan(&user, &cursors, &prepared)
		})
		if err != nil {
			t.Errorf("after acme's unit left %s: globex's unit: %v", leak.name, err)
			continue
		}
		if len(names) != 0 || user != login || cursors != 0 || prepared != 0 {
			t.Errorf("after acme's unit left %s, globex's unit read customers %q as %q with %d cursors and %d prepared statements, want none as %q",
				leak.name, names, user, cursors, prepared, login)
		}
	}
}
