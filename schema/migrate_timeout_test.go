package schema

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestMigrateStepOutlastsTheOperatorsStatementTimeout: a step that takes
// longer than the database's statement_timeout (an operator's guard, set
// with ALTER DATABASE) but less than the task's deadline is applied: the
// step sets statement_timeout for itself to the time left before the
// deadline. Cut by the operator's guard, it failed with 57014 at every
// retry, and the tenant never reached the version.
func TestMigrateStepOutlastsTheOperatorsStatementTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	ctx := context.Background()
	db := pgx.Identifier{b.pool.Config().ConnConfig.Database}.Sanitize()
	if _, err := b.pool.Exec(ctx, "ALTER DATABASE "+db+" SET statement_timeout = '200ms'"); err != nil {
		t.Fatal(err)
	}
	pool, _ := newTestPool(t, b.url, 2, nil) // sessions started with the guard
	var st string
	if err := pool.QueryRow(ctx, "SHOW statement_timeout").Scan(&st); err != nil || st != "200ms" {
		t.Fatalf("statement_timeout = %q, %v; want the guard of 200ms", st, err)
	}
	set := append(slices.Clone(embedded), Migration{Version: len(embedded) + 1, Name: "slow rewrite", sql: "SELECT pg_sleep(0.6)"})
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, err := migrate(tctx, pool, "tenant_acme", 0, set)
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if res.To != len(set) {
		t.Errorf("version %d, want %d", res.To, len(set))
	}
	// Outside a step the operator's guard still holds.
	if err := pool.QueryRow(ctx, "SHOW statement_timeout").Scan(&st); err != nil || st != "200ms" {
		t.Errorf("statement_timeout after the migration = %q, %v; want 200ms", st, err)
	}
}
