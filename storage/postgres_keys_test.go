package storage_test

import (
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
	// One pool per flusher, as replicas have: no flusher waits for another's
	// connection.
	catalogs := make([]*storage.Postgres, flushers)
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
