package schema

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// setDatabaseReadOnly sets default_transaction_read_only of pool's
// database for the sessions that start from now on (on), or resets it
// (off), in a read-write transaction of its own.
func setDatabaseReadOnly(t *testing.T, pool *pgxpool.Pool, on bool) {
	t.Helper()
	db := pgx.Identifier{pool.Config().ConnConfig.Database}.Sanitize()
	sql := "ALTER DATABASE " + db + " RESET default_transaction_read_only"
	if on {
		sql = "ALTER DATABASE " + db + " SET default_transaction_read_only = on"
	}
	ctx := context.Background()
	if err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{AccessMode: pgx.ReadWrite}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, sql)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestConnectionOfAReadOnlyServerIsNotKept: a connection whose server
// reports that it takes no writes (default_transaction_read_only, or
// in_hot_standby: a standby reached through a DNS name or a proxy that
// still led to the old primary after a failover) is closed when it is
// released, not kept in the pool: the next use dials again and reaches
// the server, or the address's new primary, as it is now. Kept, a session
// opened while the server was read-only stayed read-only for its life (up
// to the pool's connection lifetime, an hour), and every write on it was
// refused long after the server took writes again.
func TestConnectionOfAReadOnlyServerIsNotKept(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, err := NewPool(ctx, testenv.Postgres(t), PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, "CREATE TABLE public.written (n int)"); err != nil {
		t.Fatal(err)
	}
	setDatabaseReadOnly(t, pool, true)
	t.Cleanup(func() { setDatabaseReadOnly(t, pool, false) })
	pool.Reset()
	var pgErr *pgconn.PgError
	if _, err := pool.Exec(ctx, "INSERT INTO public.written VALUES (1)"); !errors.As(err, &pgErr) || pgErr.Code != "25006" {
		t.Fatalf("write on a read-only database: %v, want SQLSTATE 25006", err)
	}

	setDatabaseReadOnly(t, pool, false)
	if _, err := pool.Exec(ctx, "INSERT INTO public.written VALUES (2)"); err != nil {
		t.Fatalf("write once the database takes writes again: %v", err)
	}
}
