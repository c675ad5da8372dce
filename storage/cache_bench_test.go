package storage_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// BenchmarkTenantLookup measures Tenant(id) answered by each layer: the
// in-process layer, Redis (local layer off), and the Postgres catalog query
// a miss costs. Besides ns/op it reports the p50 and p99 of single lookups
// (each timed on its own, so the timer's ~40 ns is included).
func BenchmarkTenantLookup(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	b.Cleanup(cancel)

	cfg, err := pgxpool.ParseConfig(testenv.Postgres(b))
	if err != nil {
		b.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = ""
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if err := storage.MigrateCatalog(ctx, pool, nil); err != nil {
		b.Fatal(err)
	}
	pg := storage.NewPostgres(pool)
	tn, err := tenantctx.New("bench", "Bench", "pro")
	if err != nil {
		b.Fatal(err)
	}
	if tn, err = pg.CreateTenant(ctx, tn); err != nil {
		b.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(b)})
	b.Cleanup(func() { _ = rdb.Close() })

	newCache := func(b *testing.B, opts storage.CacheOptions) storage.Catalog {
		opts.KeyPrefix = "bench:" + b.Name() + ":"
		c := storage.NewCache(pg, rdb, opts)
		b.Cleanup(func() { _ = c.Close() })
		if _, err := c.TenantByID(ctx, tn.ID); err != nil { // warm
			b.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name    string
		catalog func(b *testing.B) storage.Catalog
	}{
		{"local_hit", func(b *testing.B) storage.Catalog {
			return newCache(b, storage.CacheOptions{LocalTTL: time.Hour})
		}},
		{"redis_hit", func(b *testing.B) storage.Catalog {
			return newCache(b, storage.CacheOptions{LocalTTL: -1, RedisTTL: time.Hour})
		}},
		{"backend", func(*testing.B) storage.Catalog { return pg }},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			c := tt.catalog(b)
			durations := make([]time.Duration, 0, 1<<16)
			for b.Loop() {
				start := time.Now()
				got, err := c.TenantByID(ctx, tn.ID)
				durations = append(durations, time.Since(start))
				if err != nil || got.ID != tn.ID {
					b.Fatalf("Tenant = %+v, %v", got, err)
				}
			}
			reportPercentiles(b, durations)
		})
	}
}

// reportPercentiles reports the p50 and p99 of durations in nanoseconds.
func reportPercentiles(b *testing.B, durations []time.Duration) {
	b.Helper()
	if len(durations) == 0 {
		return
	}
	slices.Sort(durations)
	at := func(p int) float64 { return float64(durations[(len(durations)-1)*p/100].Nanoseconds()) }
	b.ReportMetric(at(50), "p50-ns")
	b.ReportMetric(at(99), "p99-ns")
}
