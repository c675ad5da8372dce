package worker_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// zoneWarnings returns how many warnings l holds about tenant id's time
// zone zone being unknown to this build.
func (l *recordedLog) zoneWarnings(id, zone string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.records {
		if r.Level != slog.LevelWarn || !strings.Contains(r.Message, "time zone unknown to this build") ||
			!strings.Contains(r.Message, "judged in UTC") {
			continue
		}
		attrs := map[string]string{}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.String()
			return true
		})
		if attrs["tenant_id"] == id && attrs["time_zone"] == zone {
			n++
		}
	}
	return n
}

// TestUnknownTimeZoneIsWarnedOnceAndJudgedInUTC: a tenant whose catalog
// row holds a zone this build does not know (a newer release's, written
// here with SQL past the checks) is judged in UTC, and the tenant cache the
// worker resolves tenants through says so once per tenant and zone: one
// warning across several tasks and lookups (each through Redis or the
// catalog: the local layer is off), another once the row holds another
// unknown zone, none for a tenant in a zone it knows.
func TestUnknownTimeZoneIsWarnedOnceAndJudgedInUTC(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	logs := &recordedLog{}
	cache := storage.NewCache(e.catalog, rdb, storage.CacheOptions{LocalTTL: -1, KeyPrefix: "unknownzone:", Logger: slog.New(logs)})
	t.Cleanup(func() { _ = cache.Close() })
	w := workertest.New(e.h, worker.MuxOptions{Logger: discardLogger(), Catalog: cache})

	// 12:00 UTC on 1 March: 2 March already in Kiritimati (UTC+14), still
	// 1 March in UTC. An invoice due 1 March is due today in UTC.
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	e.clock.Store(&now)
	future := e.provision(t, "future", "Future")
	const unknown, unknown2 = "Mars/Olympus_Mons", "Mars/Valles_Marineris"
	setZone := func(zone string) {
		t.Helper()
		if _, err := e.pool.Exec(e.ctx, `UPDATE tenancy.tenants SET time_zone = $2 WHERE id = $1`, future.ID, zone); err != nil {
			t.Fatal(err)
		}
		// The same status again: the cache drops its entries of the tenant.
		if _, err := cache.SetStatus(e.ctx, future.ID, tenantctx.StatusActive); err != nil {
			t.Fatal(err)
		}
	}
	setZone(unknown)
	kiritimati := e.provision(t, "kiritimati", "Kiritimati")
	if _, err := e.h.Tenancy.SetTimeZone(e.ctx, kiritimati.ID, "Pacific/Kiritimati", "test"); err != nil {
		t.Fatal(err)
	}
	dueToday := e.addDueOn(t, future, "DUE-TODAY", "2026-03-01")
	dueYesterday := e.addDueOn(t, future, "DUE-YESTERDAY", "2026-02-28")
	kiritimatiDue := e.addDueOn(t, kiritimati, "DUE-TODAY-UTC", "2026-03-01")

	for tick := int64(1); tick <= 3; tick++ {
		for _, tn := range []tenantctx.Tenant{future, kiritimati} {
			if err := w.Work(e.ctx, tasks.InvoicesOverdue{TenantID: tn.ID, Tick: tick}); err != nil {
				t.Fatalf("invoices:overdue of %s, tick %d: %v", tn.Slug, tick, err)
			}
		}
		if _, err := cache.TenantBySlug(e.ctx, "future"); err != nil {
			t.Fatal(err)
		}
	}
	for id, want := range map[int64]string{dueToday: "sent", dueYesterday: "overdue"} {
		if got := e.invoiceStatus(t, future, id); got != want {
			t.Errorf("tenant in %s at %s: invoice %d is %s, want %s (judged in UTC)", unknown, now.Format(time.RFC3339), id, got, want)
		}
	}
	if got := e.invoiceStatus(t, kiritimati, kiritimatiDue); got != "overdue" {
		t.Errorf("tenant in Pacific/Kiritimati: invoice due 2026-03-01 is %s, want overdue (2 March there)", got)
	}
	if n := logs.zoneWarnings(future.ID, unknown); n != 1 {
		t.Errorf("%d warnings about tenant %s in %s after 3 tasks and 3 lookups by slug, want 1", n, future.ID, unknown)
	}
	if n := logs.zoneWarnings(kiritimati.ID, "Pacific/Kiritimati"); n != 0 {
		t.Errorf("%d warnings about a tenant in Pacific/Kiritimati, want none", n)
	}

	setZone(unknown2)
	for tick := int64(4); tick <= 5; tick++ {
		if err := w.Work(e.ctx, tasks.InvoicesOverdue{TenantID: future.ID, Tick: tick}); err != nil {
			t.Fatalf("invoices:overdue, tick %d: %v", tick, err)
		}
	}
	if n1, n2 := logs.zoneWarnings(future.ID, unknown), logs.zoneWarnings(future.ID, unknown2); n1 != 1 || n2 != 1 {
		t.Errorf("after the zone changed to %s: %d warnings about %s and %d about %s, want 1 each", unknown2, n1, unknown, n2, unknown2)
	}
	if got := e.invoiceStatus(t, future, dueToday); got != "sent" {
		t.Errorf("tenant in %s: invoice due today in UTC is %s, want sent", unknown2, got)
	}
}
