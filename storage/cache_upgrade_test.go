package storage_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// previousReleaseTenant is tenantctx.Tenant as the previous release
// encoded it: without database_generation.
type previousReleaseTenant struct {
	ID        string           `json:"id"`
	Slug      string           `json:"slug"`
	Name      string           `json:"name"`
	Status    tenantctx.Status `json:"status"`
	Schema    string           `json:"schema"`
	Plan      string           `json:"plan"`
	Limits    tenantctx.Limits `json:"limits"`
	Database  string           `json:"database"`
	CreatedAt time.Time        `json:"created_at"`
	UpdatedAt time.Time        `json:"updated_at"`
}

// previousReleaseEntry is a tenant cache entry as the previous release
// wrote it to Redis.
type previousReleaseEntry struct {
	Found  bool                   `json:"found"`
	Tenant *previousReleaseTenant `json:"tenant,omitempty"`
}

// writePreviousReleaseEntry stores tn under key as the previous release's
// cache did.
func writePreviousReleaseEntry(t *testing.T, env cacheEnv, key string, tn tenantctx.Tenant) {
	t.Helper()
	raw, err := json.Marshal(previousReleaseEntry{Found: true, Tenant: &previousReleaseTenant{
		ID: tn.ID, Slug: tn.Slug, Name: tn.Name, Status: tn.Status, Schema: tn.Schema, Plan: tn.Plan,
		Limits: tn.Limits, Database: tn.Database, CreatedAt: tn.CreatedAt, UpdatedAt: tn.UpdatedAt,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.rdb.Set(t.Context(), key, raw, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestCacheEntryOfThePreviousReleaseIsReadAgain: a tenant the previous
// release cached in Redis carries no registration number of its database
// (tenantctx.Tenant.DatabaseGeneration), so a process would use whichever
// pool of that name it has open. Such an entry is treated as a miss: the
// tenant is read from the catalog, with its number, and the entry is
// replaced by one that carries it, which is then served from Redis.
func TestCacheEntryOfThePreviousReleaseIsReadAgain(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	env := newCacheEnv(t, testenv.Redis(t))
	// Two registrations of eu2: the tenant is placed on the second.
	if _, err := env.backend.AddDatabase(ctx, "eu2", "postgres://old.invalid/db"); err != nil {
		t.Fatal(err)
	}
	if err := env.backend.RemoveDatabase(ctx, "eu2"); err != nil {
		t.Fatal(err)
	}
	eu2, err := env.backend.AddDatabase(ctx, "eu2", "postgres://new.invalid/db")
	if err != nil {
		t.Fatal(err)
	}
	tn, err := tenantctx.New("upgraded", "Upgraded", "pro")
	if err != nil {
		t.Fatal(err)
	}
	tn.Status, tn.Database = tenantctx.StatusActive, "eu2"
	tn, err = env.backend.CreateTenant(ctx, tn)
	if err != nil || tn.DatabaseGeneration != eu2.Generation {
		t.Fatalf("CreateTenant = %+v, %v; want generation %d", tn, err, eu2.Generation)
	}

	c := env.cache(t, storage.CacheOptions{LocalTTL: -1}) // every lookup reaches Redis
	writePreviousReleaseEntry(t, env, c.RedisKeyForID(tn.ID), tn)
	writePreviousReleaseEntry(t, env, c.RedisKeyForSlug(tn.Slug), tn)

	byID, err := c.TenantByID(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	bySlug, err := c.TenantBySlug(ctx, tn.Slug)
	if err != nil {
		t.Fatal(err)
	}
	if byID.DatabaseGeneration != eu2.Generation || bySlug.DatabaseGeneration != eu2.Generation {
		t.Errorf("tenant cached by the previous release read with database generation %d (by id) and %d (by slug), want %d (eu2's registration)",
			byID.DatabaseGeneration, bySlug.DatabaseGeneration, eu2.Generation)
	}
	if q := env.backend.Queries(); q != 2 {
		t.Errorf("%d catalog queries for the two previous-release entries, want 2", q)
	}
	for _, key := range []string{c.RedisKeyForID(tn.ID), c.RedisKeyForSlug(tn.Slug)} {
		raw, err := env.rdb.Get(ctx, key).Result()
		if err != nil {
			t.Fatalf("GET %s: %v", key, err)
		}
		if !strings.Contains(raw, `"database_generation"`) {
			t.Errorf("Redis entry %s after the lookup: %s; want it replaced by one with the database's generation", key, raw)
		}
	}

	// The replaced entries are Redis hits again.
	hits := c.Stats().RedisHits
	if got, err := c.TenantByID(ctx, tn.ID); err != nil || got.DatabaseGeneration != eu2.Generation {
		t.Errorf("TenantByID again = %+v, %v", got, err)
	}
	if got := c.Stats().RedisHits - hits; got != 1 {
		t.Errorf("the lookup after the entry was replaced made %d Redis hits, want 1", got)
	}
	if q := env.backend.Queries(); q != 2 {
		t.Errorf("%d catalog queries after the entries were replaced, want still 2", q)
	}
}

// TestCacheEntryWithoutTimeZoneIsReadAgain: a tenant cached in Redis by a
// release without tenant time zones (database_generation, no time_zone)
// would judge its due dates in UTC. Such an entry is treated as a miss:
// the tenant is read from the catalog, so it reads UTC when the catalog
// has UTC (every tenant the upgrade's migration gave a zone) and its own
// zone when it has one (changed while an old process still cached it),
// and the entry is replaced by one with the field, served from Redis
// from then on.
func TestCacheEntryWithoutTimeZoneIsReadAgain(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	env := newCacheEnv(t, testenv.Redis(t))
	c := env.cache(t, storage.CacheOptions{LocalTTL: -1}) // every lookup reaches Redis
	zones := map[string]string{"stayed": "", "moved-east": "Pacific/Auckland"}
	for slug, zone := range zones {
		tn, err := tenantctx.New(slug, slug, "pro")
		if err != nil {
			t.Fatal(err)
		}
		tn.Status = tenantctx.StatusActive
		if tn, err = env.backend.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
		if zone != "" {
			if tn, err = env.backend.SetTimeZone(ctx, tn.ID, zone); err != nil {
				t.Fatal(err)
			}
		}
		// As the release before time zones wrote it: with the database's
		// generation, without time_zone.
		old := tn
		old.TimeZone = ""
		raw, err := json.Marshal(map[string]any{"found": true, "tenant": old})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), "time_zone") || !strings.Contains(string(raw), `"database_generation"`) {
			t.Fatalf("entry of the previous release: %s", raw)
		}
		if err := env.rdb.Set(ctx, c.RedisKeyForID(tn.ID), raw, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}

		queries := env.backend.Queries()
		got, err := c.TenantByID(ctx, tn.ID)
		want := map[bool]string{true: zone, false: tenantctx.DefaultTimeZone}[zone != ""]
		if err != nil || got.TimeZone != want || got.TimeZoneName() != want {
			t.Errorf("tenant %s cached without a time zone read as %q, %v; want %q (the catalog's)", slug, got.TimeZone, err, want)
		}
		if q := env.backend.Queries() - queries; q != 1 {
			t.Errorf("tenant %s: %d catalog queries for its entry without a time zone, want 1", slug, q)
		}
		raw2, err := env.rdb.Get(ctx, c.RedisKeyForID(tn.ID)).Result()
		if err != nil || !strings.Contains(raw2, `"time_zone":"`+want+`"`) {
			t.Errorf("tenant %s: Redis entry after the lookup: %s, %v; want it replaced by one with its time zone", slug, raw2, err)
		}
		hits := c.Stats().RedisHits
		if got, err := c.TenantByID(ctx, tn.ID); err != nil || got.TimeZone != want {
			t.Errorf("tenant %s: TenantByID again = %+v, %v", slug, got, err)
		}
		if h := c.Stats().RedisHits - hits; h != 1 {
			t.Errorf("tenant %s: the lookup after the entry was replaced made %d Redis hits, want 1", slug, h)
		}
	}
}
