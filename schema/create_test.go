package schema

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/tenantctx"
)

// TestMigrateWithCreatesOnlyWhatItMay: without Create a missing schema is
// ErrNoSchema; Allow runs under the tenant's lock in the creating
// transaction and can refuse; a created schema records its owner; an
// existing schema of another owner, or of none, is refused and left as it
// is.
func TestMigrateWithCreatesOnlyWhatItMay(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	ctx := context.Background()
	owner, other := tenantctx.NewID(), tenantctx.NewID()
	exists := func(name string) bool {
		t.Helper()
		ok, err := Exists(ctx, b.pool, name)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	if _, err := MigrateWith(ctx, b.pool, "tenant_none", MigrateOptions{}); !errors.Is(err, ErrNoSchema) || exists("tenant_none") {
		t.Errorf("MigrateWith without Create on a missing schema = %v (exists %v), want ErrNoSchema and nothing created", err, exists("tenant_none"))
	}

	refusal := errors.New("no longer provisioning")
	var lockedInAllow bool
	refuse := func(ctx context.Context, tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks
			WHERE locktype = 'advisory' AND granted AND pid = pg_catalog.pg_backend_pid()
			  AND classid::bigint = $1 AND objid::int4 = pg_catalog.hashtext($2))`,
			int64(lockNamespace), "tenant_refused").Scan(&lockedInAllow)
		if err != nil {
			return err
		}
		return refusal
	}
	_, err := MigrateWith(ctx, b.pool, "tenant_refused", MigrateOptions{Create: &Creation{Owner: owner, Allow: refuse}})
	if !errors.Is(err, refusal) || exists("tenant_refused") {
		t.Errorf("MigrateWith refused by Allow = %v (exists %v), want Allow's error and nothing created", err, exists("tenant_refused"))
	}
	if !lockedInAllow {
		t.Error("Allow ran without the tenant's lock")
	}

	res, err := MigrateWith(ctx, b.pool, "tenant_owned", MigrateOptions{Create: &Creation{Owner: owner}})
	if err != nil || !res.Created || res.To != LatestVersion() {
		t.Fatalf("MigrateWith with Create = %+v, %v", res, err)
	}
	if ok, got, err := Owner(ctx, b.pool, "tenant_owned"); err != nil || !ok || got != owner {
		t.Errorf("Owner = %v, %q, %v; want %s", ok, got, err, owner)
	}
	if res, err := MigrateWith(ctx, b.pool, "tenant_owned", MigrateOptions{Create: &Creation{Owner: owner}}); err != nil || res.Created || len(res.Applied) != 0 {
		t.Errorf("MigrateWith again by its owner = %+v, %v; want a no-op", res, err)
	}
	if _, err := MigrateWith(ctx, b.pool, "tenant_owned", MigrateOptions{Create: &Creation{Owner: other}}); !errors.Is(err, ErrSchemaTaken) {
		t.Errorf("MigrateWith by another owner = %v, want ErrSchemaTaken", err)
	}

	// A schema of no owner, at version 1 (found by the first check) and
	// without a version table (found under the lock): refused, untouched.
	if _, err := Migrate(ctx, b.pool, "tenant_unowned", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, `CREATE SCHEMA tenant_empty`); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"tenant_unowned": 1, "tenant_empty": 0} {
		if _, err := MigrateWith(ctx, b.pool, name, MigrateOptions{Create: &Creation{Owner: owner}}); !errors.Is(err, ErrSchemaTaken) {
			t.Errorf("MigrateWith over %s = %v, want ErrSchemaTaken", name, err)
		}
		if v, err := Version(ctx, b.pool, name); err != nil || v != want {
			t.Errorf("%s at version %d (%v) after the refusal, want %d", name, v, err, want)
		}
		if ok, got, err := Owner(ctx, b.pool, name); err != nil || !ok || got != "" {
			t.Errorf("Owner(%s) = %v, %q, %v; want an existing schema without owner", name, ok, got, err)
		}
	}

	if _, err := MigrateWith(ctx, b.pool, "tenant_x", MigrateOptions{Create: &Creation{Owner: "tn_x'; DROP SCHEMA tenant_owned; --"}}); !errors.Is(err, tenantctx.ErrInvalidID) {
		t.Errorf("MigrateWith with a hostile owner = %v, want ErrInvalidID", err)
	}
	if !exists("tenant_owned") || exists("tenant_x") {
		t.Error("a hostile owner changed the database")
	}
}

// TestMigrateWithNeverRecreatesADroppedSchema: a schema dropped between
// two steps of a migration is not recreated by the next step.
func TestMigrateWithNeverRecreatesADroppedSchema(t *testing.T) {
	t.Parallel()
	b := setup(t, 4)
	ctx := context.Background()
	owner := tenantctx.NewID()
	set := []Migration{
		{Version: 1, Name: "one", sql: "CREATE TABLE one (id int)"},
		{Version: 2, Name: "two", sql: "CREATE TABLE two (id int)"},
	}
	set[0].run = func(ctx context.Context, tx pgx.Tx) error {
		// Drop waits for the tenant lock this step holds; start it now and
		// let it run once the step commits.
		go func() { _ = Drop(context.WithoutCancel(ctx), b.pool, "tenant_dropped") }()
		return waitLockWaiter(ctx, tx, "tenant_dropped")
	}
	_, err := migrateWith(ctx, b.pool, "tenant_dropped", 0, set, creation{allowed: true, owner: owner})
	if !errors.Is(err, ErrNoSchema) {
		t.Errorf("migration whose schema was dropped after its first step = %v, want ErrNoSchema", err)
	}
	if ok, err := Exists(ctx, b.pool, "tenant_dropped"); err != nil || ok {
		t.Errorf("schema exists = %v (%v) after the migration, want it dropped for good", ok, err)
	}
}

// TestMigrateWithChecksTheOwnerInEveryStep: a migration of an existing
// tenant (MigrateOptions.Owner), or of one being provisioned
// (Create.Owner), whose schema records another tenant once a step has
// committed (dropped and made again, at that version, for the slug's next
// tenant) applies no further step to it: ErrSchemaTaken, and the schema
// stays at the version it had. A schema that records no owner (made
// before owners were recorded) is migrated for an existing tenant, and a
// schema of another owner from the start gets nothing.
func TestMigrateWithChecksTheOwnerInEveryStep(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	ctx := context.Background()
	owner, next := tenantctx.NewID(), tenantctx.NewID()
	version := func(name string) int {
		t.Helper()
		v, err := Version(ctx, b.pool, name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// A set whose second step hands the schema over to next as it commits:
	// what a drop and a creation for next, at version 2, between the
	// second and third steps leave.
	handOver := func(name string) []Migration {
		set := []Migration{
			{Version: 1, Name: "one", sql: "CREATE TABLE one (id int)"},
			{Version: 2, Name: "two", sql: "CREATE TABLE two (id int)"},
			{Version: 3, Name: "three", sql: "CREATE TABLE three (id int)"},
		}
		set[1].run = func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "COMMENT ON SCHEMA "+name+" IS "+sqlLiteral(ownerPrefix+next))
			return err
		}
		return set
	}
	for _, c := range []struct {
		name string
		c    creation
	}{
		{"tenant_existing", creation{owner: owner, unowned: true}},
		{"tenant_provisioning", creation{allowed: true, owner: owner}},
	} {
		if _, err := migrateWith(ctx, b.pool, c.name, 1, handOver(c.name), creation{allowed: true, owner: owner}); err != nil {
			t.Fatal(err)
		}
		res, err := migrateWith(ctx, b.pool, c.name, 0, handOver(c.name), c.c)
		if !errors.Is(err, ErrSchemaTaken) {
			t.Errorf("%s: migration whose schema went to another tenant after its step 2 = %+v, %v; want ErrSchemaTaken", c.name, res, err)
		}
		if v := version(c.name); v != 2 {
			t.Errorf("%s: at version %d after the migration, want 2: step 3 applied to another tenant's schema", c.name, v)
		}
	}

	if _, err := Migrate(ctx, b.pool, "tenant_legacy", 1); err != nil {
		t.Fatal(err)
	}
	if res, err := MigrateWith(ctx, b.pool, "tenant_legacy", MigrateOptions{Owner: owner}); err != nil || res.To != LatestVersion() {
		t.Errorf("MigrateWith of an existing tenant over a schema without owner = %+v, %v; want it migrated", res, err)
	}
	if _, err := MigrateWith(ctx, b.pool, "tenant_nexts", MigrateOptions{Create: &Creation{Owner: next}, Target: 1}); err != nil {
		t.Fatal(err)
	}
	if res, err := MigrateWith(ctx, b.pool, "tenant_nexts", MigrateOptions{Owner: owner}); !errors.Is(err, ErrSchemaTaken) || version("tenant_nexts") != 1 {
		t.Errorf("MigrateWith of an existing tenant over another's schema = %+v, %v (version %d); want ErrSchemaTaken, nothing applied",
			res, err, version("tenant_nexts"))
	}
}

// waitLockWaiter waits until another session of this database waits for
// the tenant lock of schemaName.
func waitLockWaiter(ctx context.Context, tx pgx.Tx, schemaName string) error {
	for {
		var waiting bool
		err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks
			WHERE locktype = 'advisory' AND NOT granted
			  AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
			  AND classid::bigint IN ($1, $3) AND objid::int4 = pg_catalog.hashtext($2))`,
			int64(lockNamespace), schemaName, int64(existenceLockNamespace)).Scan(&waiting)
		if err != nil || waiting {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
