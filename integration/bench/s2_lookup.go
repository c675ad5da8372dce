package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/invoicing/tenantworker/storage"
)

// lookup is scenario 2: single Tenant(id) calls answered by each layer,
// each timed on its own, cycling over the core tenants: the in-process
// layer, Redis (local layer off), and the Postgres catalog query. Beside
// them the floors they cannot beat: a bare GET of a tenant-sized value on
// the same Redis client, a bare SELECT 1 on the same pool, and the cost of
// the timer itself.
func (b *bench) lookup(ctx context.Context, s *Scenario) error {
	c, err := b.openCore(ctx)
	if err != nil {
		return err
	}
	n := b.sz.LookupN
	s.Sizes["tenants"] = len(c.tenants)
	s.Sizes["samples_per_layer"] = n
	ids := c.tenantIDs()

	local := storage.NewCache(c.pg, b.env.rdb, storage.CacheOptions{LocalTTL: time.Hour, KeyPrefix: "benchlookup:local:"})
	defer local.Close()
	remote := storage.NewCache(c.pg, b.env.rdb, storage.CacheOptions{LocalTTL: -1, RedisTTL: time.Hour, KeyPrefix: "benchlookup:redis:"})
	defer remote.Close()

	// A value the size of a cached tenant record, for the bare GET.
	rec, _ := json.Marshal(c.tenants[0].Tenant)
	if err := b.env.rdb.Set(ctx, "benchlookup:bare", rec, time.Hour).Err(); err != nil {
		return err
	}

	tenantOf := func(cat storage.TenantStore) func(i int) error {
		return func(i int) error {
			t, err := cat.TenantByID(ctx, ids[i%len(ids)])
			if err == nil && t.ID != ids[i%len(ids)] {
				err = fmt.Errorf("lookup of %s returned %s", ids[i%len(ids)], t.ID)
			}
			return err
		}
	}
	ops := []struct {
		name string
		op   func(i int) error
	}{
		{"timer", func(int) error { return nil }},
		{"local_hit", tenantOf(local)},
		{"redis_get", func(int) error { return b.env.rdb.Get(ctx, "benchlookup:bare").Err() }},
		{"redis_hit", tenantOf(remote)},
		{"select_1", func(int) error {
			var one int
			return c.pool.QueryRow(ctx, "SELECT 1").Scan(&one)
		}},
		{"catalog_query", tenantOf(c.pg)},
	}
	res := map[string][]time.Duration{}
	for _, o := range ops {
		warm := min(n/10, 2000)
		for i := range warm {
			if err := o.op(i); err != nil {
				return fmt.Errorf("%s: %w", o.name, err)
			}
		}
		d := make([]time.Duration, n)
		for i := range n {
			start := time.Now()
			err := o.op(i)
			d[i] = time.Since(start)
			if err != nil {
				return fmt.Errorf("%s: %w", o.name, err)
			}
			if i%4096 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
		}
		slices.Sort(d)
		res[o.name] = d
	}
	p := func(name string, q float64) time.Duration { return percentile(res[name], q) }
	if ls := local.Stats(); ls.Misses > int64(len(ids)) {
		s.note("in-process layer missed %d times (expected at most one per tenant)", ls.Misses)
	}
	if rs := remote.Stats(); rs.LocalHits > 0 || rs.Misses > int64(len(ids)) {
		s.note("redis layer: %d local hits, %d misses (expected 0 and at most one per tenant)", rs.LocalHits, rs.Misses)
	}

	s.add("in-process hit p50", micros(p("local_hit", 50)), "µs").against("timer alone p50", micros(p("timer", 50)), "µs", nil)
	s.add("in-process hit p99", micros(p("local_hit", 99)), "µs").against("timer alone p99", micros(p("timer", 99)), "µs", nil).
		target("<", 1, false, "p99 < 1 µs")
	s.add("redis hit p50", micros(p("redis_hit", 50)), "µs").against("bare GET p50", micros(p("redis_get", 50)), "µs", nil)
	s.add("redis hit p99", micros(p("redis_hit", 99)), "µs").against("bare GET p99", micros(p("redis_get", 99)), "µs", nil).
		target("<", 1000, false, "p99 < 1 ms")
	s.add("catalog query p50", micros(p("catalog_query", 50)), "µs").against("bare SELECT 1 p50", micros(p("select_1", 50)), "µs", nil)
	s.add("catalog query p99", micros(p("catalog_query", 99)), "µs").against("bare SELECT 1 p99", micros(p("select_1", 99)), "µs", nil)
	s.note("each call timed on its own (time.Now/time.Since, included in every number: see the timer rows' baseline); in-process target judged on p99, the stricter reading of the issue's \"< 1 µs\"")
	s.Bound = "in-process: a map read under a lock plus TTL check (the timer is a large share); Redis: one loopback round trip (GET, then JSON decode); catalog: one pool acquire and one PostgreSQL round trip; tail latency on this shared 2-CPU machine comes from scheduling"
	return nil
}
