package schema

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// operatorGuard is the lock_timeout or statement_timeout that the tests of
// waits outlasting an operator's bound set on their database.
const operatorGuard = 200 * time.Millisecond

// poolUnderOperatorGuard sets setting ("lock_timeout" or
// "statement_timeout") to operatorGuard on b's database, as an operator
// may (ALTER DATABASE), and returns a new pool of maxConns on it: its
// sessions start with the guard, sessions started before keep theirs.
func poolUnderOperatorGuard(t testing.TB, b bundle, setting string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	db := pgx.Identifier{b.pool.Config().ConnConfig.Database}.Sanitize()
	if _, err := b.pool.Exec(context.Background(), fmt.Sprintf("ALTER DATABASE %s SET %s = '%dms'", db, setting, operatorGuard.Milliseconds())); err != nil {
		t.Fatal(err)
	}
	pool, _ := newTestPool(t, b.url, maxConns, nil)
	return pool
}
