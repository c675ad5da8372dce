package schema

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/invoicing/tenantworker/internal/procstat"
	"github.com/invoicing/tenantworker/tenantctx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// BenchmarkInTenantSelect1 measures InTenant around SELECT 1, against two
// baselines on the same server:
//
//   - release-query: the straightforward design (pgx.BeginFunc, set_config,
//     SELECT 1, COMMIT) on a hardened pool, whose AfterRelease then runs its
//     verification query;
//   - unhardened: the same on a plain pgxpool with no release check at all
//     (unsafe; the lower bound).
//
// serial uses a pool of one connection, so the next unit waits for the
// previous release to finish; parallel uses 4 connections and 8 goroutines.
func BenchmarkInTenantSelect1(b *testing.B) {
	bn := setup(b, 0)
	migrateTenant(b, bn.pool, "tenant_acme")
	ctx := tenantCtx(context.Background(), "tenant_acme")
	selectOne := func(ctx context.Context, tx pgx.Tx) error {
		var one int
		return tx.QueryRow(ctx, "SELECT 1").Scan(&one)
	}
	manual := func(pool *pgxpool.Pool) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, pinSQL, `"tenant_acme"`); err != nil {
				return err
			}
			return selectOne(ctx, tx)
		})
	}
	plain := func(b *testing.B, n int32) *pgxpool.Pool {
		cfg, err := pgxpool.ParseConfig(bn.url)
		if err != nil {
			b.Fatal(err)
		}
		cfg.MaxConns = n
		p, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(p.Close)
		return p
	}
	variants := []struct {
		name string
		pool func(b *testing.B, n int32) *pgxpool.Pool
		run  func(pool *pgxpool.Pool) error
	}{
		{"InTenant", func(b *testing.B, n int32) *pgxpool.Pool { p, _ := newTestPool(b, bn.url, n, nil); return p },
			func(p *pgxpool.Pool) error { return InTenant(ctx, p, selectOne) }},
		{"release-query", func(b *testing.B, n int32) *pgxpool.Pool { p, _ := newTestPool(b, bn.url, n, nil); return p }, manual},
		{"unhardened", plain, manual},
	}
	for _, v := range variants {
		b.Run("serial/"+v.name, func(b *testing.B) {
			pool := v.pool(b, 1)
			for b.Loop() {
				if err := v.run(pool); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("parallel/"+v.name, func(b *testing.B) {
			pool := v.pool(b, 4)
			b.SetParallelism(2) // 2 x GOMAXPROCS goroutines
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := v.run(pool); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}

	// The clean-connection check reads the session's prepared statements
	// and the server's lock table, so its cost grows with both:
	// full-cache runs InTenant on a connection whose pgx statement cache
	// holds 500 protocol-level statements of about 1 KB (a connection that
	// served many tenants' PDF statements), busy-server while 8 other
	// sessions hold 100 locks each.
	b.Run("serial/InTenant-full-cache", func(b *testing.B) {
		pool, _ := newTestPool(b, bn.url, 1, nil)
		fillStatementCache(b, pool, 500)
		for b.Loop() {
			if err := InTenant(ctx, pool, selectOne); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("serial/InTenant-busy-server", func(b *testing.B) {
		pool, _ := newTestPool(b, bn.url, 1, nil)
		holdLocks(b, bn.url, 8, 100)
		for b.Loop() {
			if err := InTenant(ctx, pool, selectOne); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkInTenantUnitParts builds InTenantBatch's unit around SELECT 1
// up, statement by statement, on one held connection (no pool, no client
// work but pgx's batch), and reports pg-us/op, the CPU of the connection's
// backend per unit (from /proc, when PostgreSQL runs on this machine; its
// clock ticks are 10 ms, so run at least -benchtime=20000x). Each row adds
// one part to the one before; unit-two-tenants is the whole unit for two
// tenants in turn, whose SELECT 1 PostgreSQL analyzes and plans again on
// every unit because search_path changed (docs/performance.md, "2026-12-06,
// fifteenth: what a pinned unit costs PostgreSQL, statement by statement").
func BenchmarkInTenantUnitParts(b *testing.B) {
	bn := setup(b, 1)
	ctx := context.Background()
	var tenants []tenantctx.Tenant
	for _, name := range []string{"tenant_acme", "tenant_beta"} {
		migrateTenant(b, bn.pool, name)
		tn, _ := tenantctx.FromContext(tenantCtx(ctx, name))
		// An owner comment, as Create records it: the pin's owner check
		// then finds one to compare.
		if _, err := bn.pool.Exec(ctx, "COMMENT ON SCHEMA "+pgx.Identifier{name}.Sanitize()+" IS "+sqlLiteral(ownerComment(tn))); err != nil {
			b.Fatal(err)
		}
		tenants = append(tenants, tn)
	}
	pc, err := bn.pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Release()
	conn := pc.Conn()
	var pid int
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_backend_pid()").Scan(&pid); err != nil {
		b.Fatal(err)
	}
	noop := func(pgconn.CommandTag) error { return nil }
	const timeoutCol = ", pg_catalog.set_config('statement_timeout', $4, true)"
	pin := func(b *pgx.Batch, t tenantctx.Tenant, sql string) {
		args := []any{pgx.Identifier{t.Schema}.Sanitize(), t.Schema, ownerComment(t), "30000"}
		switch {
		case sql == pinSQL:
			args = args[:1]
		case !strings.HasSuffix(sql, timeoutCol):
			args = args[:3]
		}
		b.Queue(sql, args...).Exec(noop)
	}
	unit := func(pinned string, verify bool) func(t tenantctx.Tenant) *pgx.Batch {
		return func(t tenantctx.Tenant) *pgx.Batch {
			b := &pgx.Batch{}
			if pinned != "" || verify {
				b.Queue(beginSQL)
			}
			if pinned != "" {
				pin(b, t, pinned)
			}
			b.Queue("SELECT 1").Exec(noop)
			if pinned != "" || verify {
				b.Queue("COMMIT")
			}
			if verify {
				b.Queue(verifyUnitSQL).Exec(noop)
			}
			return b
		}
	}
	parts := []struct {
		name    string
		batch   func(t tenantctx.Tenant) *pgx.Batch
		tenants int
	}{
		{"bare", unit("", false), 1},
		{"begin-commit", func(tenantctx.Tenant) *pgx.Batch {
			b := &pgx.Batch{}
			b.Queue(beginSQL)
			b.Queue("SELECT 1").Exec(noop)
			b.Queue("COMMIT")
			return b
		}, 1},
		{"plain-pin", unit(pinSQL, false), 1},
		{"owned-pin", unit(ownedPinSQL, false), 1},
		{"owned-pin-timeout", unit(ownedPinSQL+timeoutCol, false), 1},
		{"unit", unit(ownedPinSQL+timeoutCol, true), 1},
		{"unit-two-tenants", unit(ownedPinSQL+timeoutCol, true), 2},
	}
	for _, p := range parts {
		b.Run(p.name, func(b *testing.B) {
			i := 0
			run := func() {
				i++
				if err := conn.SendBatch(ctx, p.batch(tenants[i%p.tenants])).Close(); err != nil {
					b.Fatal(err)
				}
			}
			for range 100 { // prepared, and past the custom plans
				run()
			}
			cpu0, err0 := procstat.CPU([]int{pid})
			for b.Loop() {
				run()
			}
			if cpu1, err1 := procstat.CPU([]int{pid}); err0 == nil && err1 == nil {
				b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "pg-us/op")
			}
		})
	}
}

// fillStatementCache has pgx prepare n distinct statements of about 1 KB
// on the connection of pool (a pool of one).
func fillStatementCache(b *testing.B, pool *pgxpool.Pool, n int) {
	b.Helper()
	ctx := context.Background()
	pad := strings.Repeat("x", 1000)
	for i := range n {
		var got int
		sql := fmt.Sprintf("SELECT $1::int + %d /* %s */", i, pad)
		if err := pool.QueryRow(ctx, sql, 1).Scan(&got); err != nil {
			b.Fatal(err)
		}
	}
}

// holdLocks opens sessions connections to url, each holding locks
// transaction-level advisory locks in an open transaction until the
// benchmark ends.
func holdLocks(b *testing.B, url string, sessions, locks int) {
	b.Helper()
	ctx := context.Background()
	for i := range sessions {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = conn.Close(context.Background()) })
		if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "SELECT pg_catalog.pg_advisory_xact_lock(g) FROM pg_catalog.generate_series($1::bigint, $2::bigint) g",
			i*1000, i*1000+locks-1); err != nil {
			b.Fatal(err)
		}
	}
}

// migrateAll migrates every schema with 8 workers on pool.
func migrateAll(ctx context.Context, pool *pgxpool.Pool, schemas []string) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, len(schemas))
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(schemas) {
					return
				}
				if _, err := Migrate(ctx, pool, schemas[i], 0); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// BenchmarkMigrateFresh100 creates and fully migrates 100 fresh tenant
// schemas per op, 8 at a time (P7 in docs/architecture.md: 1,000 in < 60 s).
func BenchmarkMigrateFresh100(b *testing.B) {
	bn := setup(b, 8)
	ctx := context.Background()
	round := 0
	for b.Loop() {
		schemas := make([]string, 100)
		for i := range schemas {
			schemas[i] = fmt.Sprintf("tenant_r%d_%d", round, i)
		}
		round++
		if err := migrateAll(ctx, bn.pool, schemas); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N)/100, "ms/schema")
}

// BenchmarkMigrateNoop re-migrates 100 up-to-date schemas per op, 8 at a
// time (P7 in docs/architecture.md: a no-op run over 1,000 in < 10 s).
func BenchmarkMigrateNoop(b *testing.B) {
	bn := setup(b, 8)
	ctx := context.Background()
	schemas := make([]string, 100)
	for i := range schemas {
		schemas[i] = fmt.Sprintf("tenant_n%d", i)
	}
	if err := migrateAll(ctx, bn.pool, schemas); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := migrateAll(ctx, bn.pool, schemas); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/100, "µs/schema")
}
