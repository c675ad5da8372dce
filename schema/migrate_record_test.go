package schema

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// recordSet is a small migration set of three tables, a, b and c.
func recordSet() []Migration {
	return []Migration{
		{Version: 1, Name: "one", sql: "CREATE TABLE a (id int)"},
		{Version: 2, Name: "two", sql: "CREATE TABLE b (id int)"},
		{Version: 3, Name: "three", sql: "CREATE TABLE c (id int)"},
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// migrationRecord is one row of <schema>.schema_migrations.
type migrationRecord struct {
	Version   int
	AppliedAt time.Time
	Name      *string
	Checksum  *string
}

func readRecords(t testing.TB, pool *pgxpool.Pool, schemaName string) []migrationRecord {
	t.Helper()
	rows, err := pool.Query(context.Background(), "SELECT version, applied_at, name, checksum FROM "+
		pgx.Identifier{schemaName}.Sanitize()+".schema_migrations ORDER BY version")
	if err != nil {
		t.Fatalf("read migration records: %v", err)
	}
	recs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[migrationRecord])
	if err != nil {
		t.Fatalf("read migration records: %v", err)
	}
	return recs
}

func tableExists(t testing.TB, pool *pgxpool.Pool, schemaName, table string) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(context.Background(), "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
		pgx.Identifier{schemaName, table}.Sanitize()).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// assertRefused checks that migrating tenant_acme with set fails with
// ErrMigrationMismatch about version 2, naming what was recorded and what
// set has, and changes nothing.
func assertRefused(t *testing.T, b bundle, set []Migration, recorded, release string) {
	t.Helper()
	ctx := context.Background()
	res, err := migrate(ctx, b.pool, "tenant_acme", 0, set)
	if !errors.Is(err, ErrMigrationMismatch) {
		t.Fatalf("migrate with another version 2: %+v, %v; want ErrMigrationMismatch", res, err)
	}
	for _, want := range []string{"tenant_acme", "version 2", recorded, release, "never be renumbered or edited", "add a new migration"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if res.To != 2 || res.Applied != nil {
		t.Errorf("result = %+v, want nothing applied, still at 2", res)
	}
	if v, err := Version(ctx, b.pool, "tenant_acme"); v != 2 || err != nil {
		t.Errorf("version = %d, %v; want 2", v, err)
	}
	if tableExists(t, b.pool, "tenant_acme", "c") {
		t.Error("step 3 was applied after a mismatch")
	}
}

// A migration renumbered between releases: the schema applied "two" as
// version 2, this release's version 2 is another one. Step 3 must not run
// on top of it.
func TestMigrateRefusesARenamedAppliedMigration(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	if _, err := migrate(context.Background(), b.pool, "tenant_acme", 2, recordSet()); err != nil {
		t.Fatal(err)
	}
	set := recordSet()
	set[1].Name = "renumbered"
	assertRefused(t, b, set, `"two"`, `"renumbered"`)
}

// A migration edited between releases: same version and name, other SQL.
func TestMigrateRefusesAnEditedAppliedMigration(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	if _, err := migrate(context.Background(), b.pool, "tenant_acme", 2, recordSet()); err != nil {
		t.Fatal(err)
	}
	set := recordSet()
	set[1].sql = "CREATE TABLE b (id bigint)"
	assertRefused(t, b, set, sha256Hex("CREATE TABLE b (id int)"), sha256Hex("CREATE TABLE b (id bigint)"))
}

// A version table made before names and checksums were recorded: its
// next step adds the columns, the old rows stay unknown (NULL, trusted
// even where this release differs), new rows carry name and checksum
// (of the SQL text, even empty for a step that only runs code), and
// nothing pending still costs one query.
func TestMigrateRecordsOnAnOldVersionTable(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	ctx := context.Background()
	if _, err := b.pool.Exec(ctx, `CREATE SCHEMA tenant_acme;
		CREATE TABLE tenant_acme.schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
		CREATE TABLE tenant_acme.a (id int); CREATE TABLE tenant_acme.b (id int);
		INSERT INTO tenant_acme.schema_migrations (version) VALUES (1), (2)`); err != nil {
		t.Fatal(err)
	}
	set := recordSet()
	set[1].Name = "renamed_since" // unknown on this schema: trusted
	set = append(set, Migration{Version: 4, Name: "code_only", run: func(context.Context, pgx.Tx) error { return nil }})
	res, err := migrate(ctx, b.pool, "tenant_acme", 0, set)
	if err != nil || !slices.Equal(res.Applied, []int{3, 4}) {
		t.Fatalf("migrate an old version table: %+v, %v", res, err)
	}
	recs := readRecords(t, b.pool, "tenant_acme")
	if len(recs) != 4 {
		t.Fatalf("records = %+v, want 4", recs)
	}
	for _, r := range recs[:2] {
		if r.Name != nil || r.Checksum != nil {
			t.Errorf("old record %d = %v, %v; want NULL, NULL", r.Version, r.Name, r.Checksum)
		}
	}
	for i, want := range []struct{ name, sum string }{{"three", sha256Hex("CREATE TABLE c (id int)")}, {"code_only", sha256Hex("")}} {
		r := recs[2+i]
		if r.Name == nil || *r.Name != want.name || r.Checksum == nil || *r.Checksum != want.sum {
			t.Errorf("record %d = %v, %v; want %q, %s", r.Version, r.Name, r.Checksum, want.name, want.sum)
		}
	}
	before := b.count.queries.Load()
	if res, err := migrate(ctx, b.pool, "tenant_acme", 0, set); err != nil || res.Applied != nil {
		t.Fatalf("no-op migrate: %+v, %v", res, err)
	}
	if n := b.count.queries.Load() - before; n != 1 {
		t.Errorf("no-op migrate sent %d queries, want 1", n)
	}
}

// Migrate records each embedded step by its file's name and the sha256 of
// its bytes.
func TestMigrateRecordsEmbeddedNamesAndChecksums(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	if _, err := Migrate(context.Background(), b.pool, "tenant_acme", 0); err != nil {
		t.Fatal(err)
	}
	recs := readRecords(t, b.pool, "tenant_acme")
	if len(recs) != LatestVersion() {
		t.Fatalf("records = %+v, want %d", recs, LatestVersion())
	}
	for i, m := range Migrations() {
		body, err := migrationFiles.ReadFile(fmt.Sprintf("migrations/%04d_%s.sql", m.Version, m.Name))
		if err != nil {
			t.Fatal(err)
		}
		r := recs[i]
		if r.Version != m.Version || r.Name == nil || *r.Name != m.Name || r.Checksum == nil || *r.Checksum != sha256Hex(string(body)) {
			t.Errorf("record %d = %v, %v; want %q, %s", r.Version, r.Name, r.Checksum, m.Name, sha256Hex(string(body)))
		}
	}
}

// A copy carries the source's migration records as they are: unknown
// (NULL) where the source did not record them, applied_at as the source
// has it.
func TestCopyKeepsMigrationRecords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, _ := newTestPool(t, testenv.Postgres(t), 0, nil)
	dst, _ := newTestPool(t, testenv.Postgres(t), 0, nil)
	if _, err := src.Exec(ctx, `CREATE SCHEMA tenant_acme;
		CREATE TABLE tenant_acme.schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
		CREATE TABLE tenant_acme.a (id int);
		INSERT INTO tenant_acme.schema_migrations (version, applied_at) VALUES (1, '2024-01-02 03:04:05+00')`); err != nil {
		t.Fatal(err)
	}
	if _, err := migrate(ctx, src, "tenant_acme", 3, recordSet()); err != nil {
		t.Fatal(err)
	}
	c, err := beginCopy(ctx, src, dst, "tenant_acme", recordSet())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
	want, got := readRecords(t, src, "tenant_acme"), readRecords(t, dst, "tenant_acme")
	if len(got) != 3 || !slices.EqualFunc(got, want, func(a, b migrationRecord) bool {
		return a.Version == b.Version && a.AppliedAt.Equal(b.AppliedAt) && eqPtr(a.Name, b.Name) && eqPtr(a.Checksum, b.Checksum)
	}) {
		t.Errorf("copy's migration records = %s, want the source's %s", showRecords(got), showRecords(want))
	}
}

// A source that recorded another migration under a version than this
// release's is not copied: the target would be built by other steps.
func TestCopyRefusesASourceWithOtherMigrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, _ := newTestPool(t, testenv.Postgres(t), 0, nil)
	dst, _ := newTestPool(t, testenv.Postgres(t), 0, nil)
	if _, err := migrate(ctx, src, "tenant_acme", 2, recordSet()); err != nil {
		t.Fatal(err)
	}
	set := recordSet()
	set[0].sql = "CREATE TABLE a (id bigint)"
	c, err := beginCopy(ctx, src, dst, "tenant_acme", set)
	if err == nil {
		_ = c.Release(ctx)
	}
	if !errors.Is(err, ErrMigrationMismatch) {
		t.Fatalf("copy with another version 1: %v; want ErrMigrationMismatch", err)
	}
	if ok, err := Exists(ctx, dst, "tenant_acme"); ok || err != nil {
		t.Errorf("target schema exists after the refused copy: %v, %v", ok, err)
	}
}

func eqPtr(a, b *string) bool { return (a == nil && b == nil) || (a != nil && b != nil && *a == *b) }

func showRecords(rs []migrationRecord) string {
	var parts []string
	for _, r := range rs {
		s := func(p *string) string {
			if p == nil {
				return "NULL"
			}
			return *p
		}
		parts = append(parts, fmt.Sprintf("%d %s %s %s", r.Version, r.AppliedAt.UTC().Format(time.RFC3339Nano), s(r.Name), s(r.Checksum)))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}
