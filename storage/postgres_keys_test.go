package storage_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestRecordAPIKeyUseConcurrentFlushesNeverDeadlock: several processes
// (enqueue service replicas) flushing the last use of overlapping keys at
// the same time, each batch in its own order, never fail, and in particular
// never with a deadlock (40P01); every key ends with the latest time any
// flush gave it.
func TestRecordAPIKeyUseConcurrentFlushesNeverDeadlock(t *testing.T) {
	t.Parallel()
	const (
		flushers = 8
		rounds   = 30
		keys     = 120
	)
	url := testenv.Postgres(t)
	setup := newTestPool(t, url)
	ctx := testContext(t)
	if err := storage.MigrateCatalog(ctx, setup, nil); err != nil {
		t.Fatalf("MigrateCatalog: %v", err)
	}
	catalogs := flushCatalogs(t, url, flushers)
	cat := storage.NewPostgres(setup)
	tn, err := cat.CreateTenant(ctx, tenantctx.Tenant{
		ID: tenantctx.NewID(), Slug: "flushers", Name: "Flushers", Status: tenantctx.StatusActive,
		Schema: tenantctx.SchemaForSlug("flushers"),
	})
	if err != nil {
		t.Fatalf("CreateTenant: %v", err)
	}
	hashes := make([]string, keys)
	for i := range hashes {
		_, key, err := cat.IssueAPIKey(ctx, tn.ID)
		if err != nil {
			t.Fatalf("IssueAPIKey: %v", err)
		}
		hashes[i] = storage.HashAPIKey(key)
	}

	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Microsecond)
	var (
		mu     sync.Mutex
		latest = map[string]time.Time{} // hash -> latest time any flush gave
		errs   []error
	)
	for round := range rounds {
		start := make(chan struct{})
		var wg sync.WaitGroup
		for f := range flushers {
			// Each flusher uses about three quarters of the keys, overlapping
			// the others', each at its own time within the round; a later
			// round's times are all later.
			uses := map[string]time.Time{}
			for _, h := range hashes {
				if rand.IntN(4) == 0 {
					continue
				}
				at := base.Add(time.Duration(round)*time.Minute + time.Duration(rand.IntN(50_000))*time.Millisecond)
				uses[h] = at
				mu.Lock()
				if at.After(latest[h]) {
					latest[h] = at
				}
				mu.Unlock()
			}
			wg.Go(func() {
				<-start
				if err := catalogs[f].RecordAPIKeyUse(ctx, uses); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("round %d, flusher %d: %w", round, f, err))
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
	}
	if len(errs) > 0 {
		deadlocks := 0
		for _, err := range errs {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "40P01" {
				deadlocks++
			}
		}
		t.Fatalf("%d of %d flushes failed, %d of them with a deadlock (40P01); first: %v",
			len(errs), flushers*rounds, deadlocks, errs[0])
	}

	// Every key holds the latest time it was given.
	got := map[string]time.Time{}
	rows, err := setup.Query(ctx, `SELECT key_hash, last_used_at FROM tenancy.api_keys WHERE last_used_at IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var h string
		var at time.Time
		if err := rows.Scan(&h, &at); err != nil {
			t.Fatal(err)
		}
		got[h] = at
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, h := range hashes {
		if want, ok := latest[h]; ok && !got[h].Equal(want) {
			t.Errorf("key %.12s: last used %v, want the latest flushed %v", h, got[h], want)
		}
	}
}

// flushCatalogs returns n catalogs on the database at url, each with its
// own small pool, as replicas have: none waits for another's connection.
func flushCatalogs(t *testing.T, url string, n int) []*storage.Postgres {
	t.Helper()
	ctx := testContext(t)
	catalogs := make([]*storage.Postgres, n)
	for i := range catalogs {
		cfg, err := pgxpool.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ConnConfig.RuntimeParams["search_path"] = ""
		cfg.MaxConns = 2
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		catalogs[i] = storage.NewPostgres(pool)
	}
	return catalogs
}

// keyWriterRace runs, round after round, writers (each a call of write on
// its own catalog for the round's tenant) at the same time as flushers of
// the last use of overlapping keys of that tenant, and fails the test if
// any call fails, naming deadlocks (40P01). Each round has a new tenant
// whose keys were each used once beforehand, one key at a time in random
// order (as single-key flushes would), so that their rows need not lie
// in the table in id order, as after a history of updates. check is then
// called with the round's tenant, key hashes and the latest time any flush
// gave each key.
func keyWriterRace(t *testing.T, write func(ctx context.Context, c *storage.Postgres, tenantID string) error,
	check func(ctx context.Context, setup *pgxpool.Pool, tenantID string, hashes []string, latest map[string]time.Time)) {
	t.Helper()
	const (
		writers  = 2
		flushers = 6
		rounds   = 30
		keys     = 60
	)
	url := testenv.Postgres(t)
	setup := newTestPool(t, url)
	ctx := testContext(t)
	if err := storage.MigrateCatalog(ctx, setup, nil); err != nil {
		t.Fatalf("MigrateCatalog: %v", err)
	}
	catalogs := flushCatalogs(t, url, writers+flushers)
	cat := storage.NewPostgres(setup)
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Microsecond)

	var (
		mu   sync.Mutex
		errs []error
	)
	for round := range rounds {
		slug := fmt.Sprintf("race-%d", round)
		tn, err := cat.CreateTenant(ctx, tenantctx.Tenant{
			ID: tenantctx.NewID(), Slug: slug, Name: slug, Status: tenantctx.StatusActive,
			Schema: tenantctx.SchemaForSlug(slug),
		})
		if err != nil {
			t.Fatalf("CreateTenant: %v", err)
		}
		hashes := make([]string, keys)
		for i := range hashes {
			_, key, err := cat.IssueAPIKey(ctx, tn.ID)
			if err != nil {
				t.Fatalf("IssueAPIKey: %v", err)
			}
			hashes[i] = storage.HashAPIKey(key)
		}
		latest := map[string]time.Time{}
		for _, i := range rand.Perm(keys) {
			latest[hashes[i]] = base
			if err := cat.RecordAPIKeyUse(ctx, map[string]time.Time{hashes[i]: base}); err != nil {
				t.Fatalf("RecordAPIKeyUse: %v", err)
			}
		}

		failedBefore := len(errs)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				<-start
				if err := write(ctx, catalogs[w], tn.ID); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("round %d, writer %d: %w", round, w, err))
					mu.Unlock()
				}
			})
		}
		for f := range flushers {
			uses := map[string]time.Time{}
			for _, h := range hashes {
				if rand.IntN(4) == 0 {
					continue
				}
				at := base.Add(time.Minute + time.Duration(rand.IntN(50_000))*time.Millisecond)
				uses[h] = at
				if at.After(latest[h]) {
					latest[h] = at
				}
			}
			wg.Go(func() {
				<-start
				if err := catalogs[writers+f].RecordAPIKeyUse(ctx, uses); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("round %d, flusher %d: %w", round, f, err))
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		if len(errs) == failedBefore { // a round with a failed call is reported below
			check(ctx, setup, tn.ID, hashes, latest)
		}
	}
	if len(errs) > 0 {
		deadlocks := 0
		for _, err := range errs {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "40P01" {
				deadlocks++
			}
		}
		t.Fatalf("%d of %d calls failed, %d of them with a deadlock (40P01); first: %v",
			len(errs), (writers+flushers)*rounds, deadlocks, errs[0])
	}
}

// TestRevokeAPIKeysConcurrentWithFlushesNeverDeadlock: revoking all of a
// tenant's keys while replicas flush the last use of some of them never
// fails, and in particular never with a deadlock (40P01); every key ends
// revoked and with the latest time any flush gave it.
func TestRevokeAPIKeysConcurrentWithFlushesNeverDeadlock(t *testing.T) {
	t.Parallel()
	keyWriterRace(t,
		func(ctx context.Context, c *storage.Postgres, tenantID string) error {
			return c.RevokeAPIKeys(ctx, tenantID)
		},
		func(ctx context.Context, setup *pgxpool.Pool, tenantID string, hashes []string, latest map[string]time.Time) {
			t.Helper()
			rows, err := setup.Query(ctx,
				`SELECT key_hash, last_used_at, revoked_at IS NOT NULL FROM tenancy.api_keys WHERE tenant_id = $1`, tenantID)
			if err != nil {
				t.Fatal(err)
			}
			seen := 0
			for rows.Next() {
				var (
					h       string
					at      time.Time
					revoked bool
				)
				if err := rows.Scan(&h, &at, &revoked); err != nil {
					t.Fatal(err)
				}
				seen++
				if !revoked {
					t.Errorf("key %.12s not revoked", h)
				}
				if !at.Equal(latest[h]) {
					t.Errorf("key %.12s: last used %v, want the latest flushed %v", h, at, latest[h])
				}
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if seen != len(hashes) {
				t.Errorf("tenant %s has %d keys, want %d", tenantID, seen, len(hashes))
			}
		})
}

// TestDeleteTenantConcurrentWithFlushesNeverDeadlocks: deleting a tenant
// (its keys go with it) while replicas flush the last use of some of its
// keys never fails, and in particular never with a deadlock (40P01); no
// key of the tenant is left.
func TestDeleteTenantConcurrentWithFlushesNeverDeadlocks(t *testing.T) {
	t.Parallel()
	keyWriterRace(t,
		func(ctx context.Context, c *storage.Postgres, tenantID string) error {
			// Both writers delete the same tenant: one of them finds it gone.
			if err := c.DeleteTenant(ctx, tenantID); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			return nil
		},
		func(ctx context.Context, setup *pgxpool.Pool, tenantID string, _ []string, _ map[string]time.Time) {
			t.Helper()
			var left int
			if err := setup.QueryRow(ctx, `SELECT count(*) FROM tenancy.api_keys WHERE tenant_id = $1`, tenantID).Scan(&left); err != nil {
				t.Fatal(err)
			}
			if left != 0 {
				t.Errorf("tenant %s deleted, %d of its keys left", tenantID, left)
			}
		})
}
