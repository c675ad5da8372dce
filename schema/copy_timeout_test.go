package schema

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// slowRows is a table each row of which takes 0.1 s to write, as a big
// table's rows take time together.
const slowRows = `CREATE TABLE slow_rows (id int PRIMARY KEY);
CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_catalog.pg_sleep(0.1); RETURN NEW; END $$;
CREATE TRIGGER slow_row BEFORE INSERT ON slow_rows FOR EACH ROW EXECUTE FUNCTION slow_row();`

// TestCopyOutlastsTheTargetsStatementTimeout: a copy whose COPY into the
// target takes longer than the target database's statement_timeout (an
// operator's guard, ALTER DATABASE) but less than the caller's deadline
// is made: the copy's statements are bounded by the deadline, not by the
// guard, which cut the same table's copy at every try of the move.
func TestCopyOutlastsTheTargetsStatementTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, _ := newTestPool(t, testenv.Postgres(t), 0, nil)
	dstURL := testenv.Postgres(t)
	const name = "tenant_slow"
	set := append(slices.Clip(embedded), Migration{Version: len(embedded) + 1, Name: "slow_rows", sql: slowRows})
	if _, err := migrateWith(ctx, src, name, 0, set, createAnything); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Exec(ctx, "INSERT INTO tenant_slow.slow_rows SELECT generate_series(1, 5)"); err != nil {
		t.Fatal(err)
	}
	admin, _ := newTestPool(t, dstURL, 1, nil)
	db := pgx.Identifier{admin.Config().ConnConfig.Database}.Sanitize()
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+db+" SET statement_timeout = '200ms'"); err != nil {
		t.Fatal(err)
	}
	dst, _ := newTestPool(t, dstURL, 0, nil) // sessions started with the guard

	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := beginCopy(cctx, src, dst, name, set)
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	if err := c.Abort(ctx); err != nil {
		t.Fatal(err)
	}
}
