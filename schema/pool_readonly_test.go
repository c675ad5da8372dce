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

// ageConnections makes the live connections of pool's database
// readOnlyConnLifetime older, as if that much time had passed since they
// were made.
func ageConnections(pool *pgxpool.Pool) {
	db := pool.Config().ConnConfig.Database
	conns.Range(func(k, v any) bool {
		if k.(*pgx.Conn).Config().Database == db {
			st := v.(*connState)
			st.mu.Lock()
			st.connected = st.connected.Add(-readOnlyConnLifetime)
			st.mu.Unlock()
		}
		return true
	})
}

// TestConnectionOfAReadOnlyServerIsNotKept: a connection whose server
// reports that it takes no writes (default_transaction_read_only, or
// in_hot_standby: a standby reached through a DNS name or a proxy that
// still led to the old primary after a failover) is closed once it is
// readOnlyConnLifetime old, when it is released or acquired, not kept in
// the pool: the next use dials again and reaches the server, or the
// address's new primary, as it is now. Kept, a session
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
	ageConnections(pool)
	if _, err := pool.Exec(ctx, "INSERT INTO public.written VALUES (2)"); err != nil {
		t.Fatalf("write once the database takes writes again: %v", err)
	}
}

// TestReadOnlyServerIsNotDialedAtEveryUse: while the server takes no
// writes (default_transaction_read_only set for a while, a standby that a
// DNS name still leads to after a failover), the pool's connections still
// serve reads, and each is dialed again at most once per
// readOnlyConnLifetime, not at every release: 20 reads on a pool of 2
// make at most 2 connections. Closed at each release, every read (every
// request of the enqueue service, every unit of the worker) dialed a new
// connection, a reconnect storm on the server for as long as it stayed
// read-only.
func TestReadOnlyServerIsNotDialedAtEveryUse(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const maxConns = 2
	pool, err := NewPool(ctx, testenv.Postgres(t), PoolOptions{MaxConns: maxConns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	setDatabaseReadOnly(t, pool, true)
	t.Cleanup(func() { setDatabaseReadOnly(t, pool, false) })
	pool.Reset()

	before := pool.Stat().NewConnsCount()
	for range 20 {
		var n int
		if err := pool.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
			t.Fatalf("read on a read-only database: %v", err)
		}
	}
	if dialed := pool.Stat().NewConnsCount() - before; dialed > maxConns {
		t.Errorf("20 reads on a read-only database dialed %d connections, want at most %d (the pool's)", dialed, maxConns)
	}
}
