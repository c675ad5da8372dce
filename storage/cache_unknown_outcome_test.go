package storage_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tenantctx"
)

// errLostAck is what a client sees when its connection breaks after the
// server committed the statement (or its context ends while the answer is
// on its way): the outcome is unknown to the caller, the change is saved.
var errLostAck = errors.New("read tcp: connection reset by peer")

// ackLosingBackend commits SetPlacement and SetLimits, then loses the
// answer.
type ackLosingBackend struct{ *memstore.Catalog }

func (b ackLosingBackend) SetPlacement(ctx context.Context, id, from, to string, gen int64) (tenantctx.Tenant, error) {
	if _, err := b.Catalog.SetPlacement(ctx, id, from, to, gen); err != nil {
		return tenantctx.Tenant{}, err
	}
	return tenantctx.Tenant{}, errLostAck
}

func (b ackLosingBackend) SetLimits(ctx context.Context, id, plan string, l tenantctx.Limits) (tenantctx.Tenant, error) {
	if _, err := b.Catalog.SetLimits(ctx, id, plan, l); err != nil {
		return tenantctx.Tenant{}, err
	}
	return tenantctx.Tenant{}, errLostAck
}

// TestCacheInvalidatesPlacementOfUnknownOutcome: a SetPlacement (or
// SetLimits) whose outcome is unknown to the caller (the backend saved it,
// the answer was lost) must invalidate like SetStatus does, or every other
// process keeps the old placement from Redis for RedisTTL.
func TestCacheInvalidatesPlacementOfUnknownOutcome(t *testing.T) {
	t.Parallel()
	addr := testenv.Redis(t)
	ctx := t.Context()
	env := newCacheEnv(t, addr)
	backend := ackLosingBackend{env.backend}
	mk := func() *storage.Cache {
		c := storage.NewCache(backend, env.rdb, storage.CacheOptions{KeyPrefix: env.prefix, LocalTTL: 50 * time.Millisecond})
		t.Cleanup(func() { _ = c.Close() })
		if err := c.WaitSubscribed(ctx); err != nil {
			t.Fatal(err)
		}
		return c
	}
	writer, other := mk(), mk()
	gen, err := writer.AddDatabase(ctx, "eu-2", "")
	if err != nil {
		t.Fatal(err)
	}
	tn := mustCreateTenant(t, ctx, writer, "placed", tenantctx.StatusActive)
	if got, err := other.TenantByID(ctx, tn.ID); err != nil || got.Database != "main" { // cached in Redis
		t.Fatalf("warm-up: %+v, %v", got, err)
	}

	_, err = writer.SetPlacement(ctx, tn.ID, "main", "eu-2", gen.Generation)
	if !errors.Is(err, errLostAck) {
		t.Fatalf("SetPlacement = %v, want the lost answer", err)
	}
	if cur, _ := env.backend.TenantByID(ctx, tn.ID); cur.Database != "eu-2" {
		t.Fatalf("backend placement %q, want eu-2 (saved)", cur.Database)
	}
	time.Sleep(500 * time.Millisecond) // 10x the local TTL
	if got, err := other.TenantByID(ctx, tn.ID); err != nil || got.Database != "eu-2" {
		t.Errorf("another process reads placement %q (err %v) while the catalog says eu-2", got.Database, err)
	}
	if got, err := writer.TenantByID(ctx, tn.ID); err != nil || got.Database != "eu-2" {
		t.Errorf("the writer itself reads placement %q (err %v) while the catalog says eu-2", got.Database, err)
	}

	_, err = writer.SetLimits(ctx, tn.ID, "", tenantctx.Limits{MaxRunning: 1})
	if !errors.Is(err, errLostAck) {
		t.Fatalf("SetLimits = %v, want the lost answer", err)
	}
	time.Sleep(500 * time.Millisecond)
	if got, err := other.TenantByID(ctx, tn.ID); err != nil || got.Limits.MaxRunning != 1 {
		t.Errorf("another process reads max_running %d (err %v) while the catalog says 1", got.Limits.MaxRunning, err)
	}
}

// TestFSPutLongValidKey: a key ValidateDocumentKey accepts (up to
// 255 bytes, a last segment up to 255 bytes) must be storable; the
// temporary file's name adds 32 bytes to the last segment.
func TestFSPutLongValidKey(t *testing.T) {
	t.Parallel()
	b := setupFS(t)
	tenant := tenantctx.NewID()
	for _, key := range []string{
		strings.Repeat("a", storage.MaxDocumentKeyLen),
		"invoices/" + strings.Repeat("b", 240) + ".pdf",
	} {
		if err := storage.ValidateDocumentKey(key); err != nil {
			t.Fatalf("ValidateDocumentKey(%d bytes): %v", len(key), err)
		}
		content := []byte("%PDF-1.7 long key")
		if _, err := b.store.Put(testContext(t), tenant, key, bytes.NewReader(content)); err != nil {
			t.Errorf("Put(valid key of %d bytes): %v", len(key), err)
			continue
		}
		got, _, err := readDoc(t, b.store, tenant, key)
		if err != nil || !bytes.Equal(got, content) {
			t.Errorf("Open(valid key of %d bytes) = %q, %v", len(key), got, err)
		}
	}
}

// TestMemstoreSetPlacementLikePostgres: the errors of SetPlacement
// onto an unregistered database for a tenant that is not on from, or is
// being deleted, are the same in both catalogs.
func TestMemstoreSetPlacementLikePostgres(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	catalogs := map[string]storage.Catalog{"postgres": setupPostgres(t).catalog, "memstore": memstore.New()}
	sentinels := []error{storage.ErrNotFound, storage.ErrPlacementChanged, storage.ErrInvalidTransition, storage.ErrRegistrationChanged}
	kind := func(err error) string {
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return s.Error()
			}
		}
		if err == nil {
			return "nil"
		}
		return "other: " + err.Error()
	}
	results := map[string][2]string{}
	for name, c := range catalogs {
		active := mustCreateTenant(t, ctx, c, "pl-active-"+name[:2], tenantctx.StatusActive)
		leaving := mustCreateTenant(t, ctx, c, "pl-leaving-"+name[:2], tenantctx.StatusDeleting)
		_, e1 := c.SetPlacement(ctx, active.ID, "elsewhere", "nowhere", 0)
		_, e2 := c.SetPlacement(ctx, leaving.ID, "main", "nowhere", 0)
		results[name] = [2]string{kind(e1), kind(e2)}
	}
	if results["postgres"] != results["memstore"] {
		t.Errorf("SetPlacement(not on from, unregistered to), SetPlacement(deleting, unregistered to): postgres %q, memstore %q",
			results["postgres"], results["memstore"])
	}
}

// TestCacheGuardRestartsAfterExpiry: a guard expires an hour after
// its last invalidation and INCR then starts it at 1 again, the value a
// reader may have read just before it expired: that reader's fill of what
// it read before the next invalidation passes the guard, and every process
// serves the old status from Redis for RedisTTL. (The hour is shortened
// with PEXPIRE; Redis losing its keys, a restart without persistence,
// resets the guards the same way.)
func TestCacheGuardRestartsAfterExpiry(t *testing.T) {
	t.Parallel()
	addr := testenv.Redis(t)
	ctx := t.Context()
	env := newCacheEnv(t, addr)
	gated := newGatedBackend()
	opts := storage.CacheOptions{KeyPrefix: env.prefix, LocalTTL: -1} // the Redis layer only
	writer := storage.NewCache(gated, env.rdb, opts)
	reader := storage.NewCache(gated, env.rdb, opts)
	t.Cleanup(func() { _ = writer.Close(); _ = reader.Close() })

	tn := mustCreateTenant(t, ctx, gated, "aba", tenantctx.StatusActive)
	// One status change in the last hour: the guard is set (1 on the current code).
	if _, err := writer.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
		t.Fatal(err)
	}
	guard := writer.RedisKeyForID(tn.ID) + ":v"
	if v, err := env.rdb.Get(ctx, guard).Result(); err != nil || v == "" {
		t.Fatalf("guard = %q, %v; want set", v, err)
	}

	// A reader reads the guard (1) and the active tenant, and pauses...
	gated.armed <- struct{}{}
	done := make(chan error, 1)
	go func() {
		_, err := reader.TenantByID(ctx, tn.ID)
		done <- err
	}()
	<-gated.reached
	// ...the guard's hour ends...
	if err := env.rdb.PExpire(ctx, guard, time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if n, _ := env.rdb.Exists(ctx, guard).Result(); n != 0 {
		t.Fatalf("guard did not expire")
	}
	// ...the tenant is suspended, its invalidation succeeds...
	if _, err := writer.SetStatus(ctx, tn.ID, tenantctx.StatusSuspended); err != nil {
		t.Fatalf("SetStatus(suspended): %v", err)
	}
	// ...and the paused reader stores what it read.
	close(gated.release)
	if err := <-done; err != nil {
		t.Fatalf("paused lookup: %v", err)
	}

	fresh := storage.NewCache(gated, env.rdb, opts)
	t.Cleanup(func() { _ = fresh.Close() })
	if got, err := fresh.TenantByID(ctx, tn.ID); err != nil || got.Status != tenantctx.StatusSuspended {
		ttl, _ := env.rdb.PTTL(ctx, writer.RedisKeyForID(tn.ID)).Result()
		t.Errorf("after a successful suspension every process reads %s (err %v) from Redis for another %s", got.Status, err, ttl.Round(time.Second))
	}
}
