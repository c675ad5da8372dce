package placement_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
)

// TestRecheckOfAnUnusableDatabaseOpensNoPool: Choose's re-check of a
// TENANT_DATABASES database found unusable (by load and by name) is made
// on a connection of its own, as its ping and `enqueue db list`'s check
// are, without opening the database's pool in the registry: with
// KeepConns (DB_KEEP_CONNS, the default) that pool would keep
// TENANT_DB_MAX_CONNS connections to a database that takes no tenant, in
// every process placing tenants, from its first re-check on.
func TestRecheckOfAnUnusableDatabaseOpensNoPool(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	main := catalogPool(t)
	srv := testenv.StartPostgres(t)
	lateURL := srv.DatabaseAs(t, false) // its role may not create schemas
	srv.Stop(t)
	log := &testenv.LogBuffer{}
	r := placement.New(placement.Options{MainPool: main, URLs: map[string]string{"late": lateURL},
		Catalog: storage.NewPostgres(main), MaxConns: 4, KeepConns: true, RefreshInterval: -1,
		RecheckInterval: time.Nanosecond, Logger: slog.New(slog.NewTextHandler(log, nil))})
	t.Cleanup(func() { _ = r.Close() })
	if err := r.CheckConfigured(ctx); err != nil {
		t.Fatalf("CheckConfigured with late down: %v", err)
	}
	if err := r.Register(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Start(t)

	// Its ping finds it unusable.
	if name, err := r.Choose(ctx, ""); err != nil || name != "main" {
		t.Fatalf("Choose() = %q, %v; want main", name, err)
	}
	if err := r.Unusable()["late"]; !errors.Is(err, placement.ErrMayNotCreateSchemas) {
		t.Fatalf("Unusable()[late] = %v, want ErrMayNotCreateSchemas; log:\n%s", err, log)
	}
	// Re-checked, by load and by name (its interval is over at once).
	for range 2 {
		if name, err := r.Choose(ctx, ""); err != nil || name != "main" {
			t.Fatalf("Choose() = %q, %v; want main", name, err)
		}
		if name, err := r.Choose(ctx, "late"); !errors.Is(err, placement.ErrMayNotCreateSchemas) {
			t.Fatalf("Choose(late) = %q, %v; want ErrMayNotCreateSchemas", name, err)
		}
	}
	if open := r.Open(); len(open) != 1 {
		t.Errorf("Open() = %v after the re-checks; want main only", open)
	}
	if strings.Contains(log.String(), "opened tenant database pool") {
		t.Errorf("a re-check opened late's pool:\n%s", log)
	}
}
