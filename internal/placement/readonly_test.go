package placement_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
)

// readOnlyDatabase returns the URL of a database of the tests' shared
// PostgreSQL that answers but takes no writes, as a hot standby or a
// database set read-only does: default_transaction_read_only on for it.
func readOnlyDatabase(t *testing.T) string {
	t.Helper()
	dsn := testenv.Postgres(t)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), "ALTER DATABASE "+pgx.Identifier{conn.Config().Database}.Sanitize()+
		" SET default_transaction_read_only = on"); err != nil {
		t.Fatal(err)
	}
	return dsn
}

// TestAddRefusesADatabaseThatTakesNoWrites: `enqueue db add` of a
// database that answers but takes no writes (a replica's URL registered
// by mistake, a database set read-only) is refused with ErrReadOnly and a
// message saying so, and nothing is registered: its tenants would wait
// for ever.
func TestAddRefusesADatabaseThatTakesNoWrites(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	main := catalogPool(t)
	catalog := storage.NewPostgres(main)
	r := placement.New(placement.Options{MainPool: main, Catalog: catalog, MaxConns: 2})
	t.Cleanup(func() { _ = r.Close() })
	_, err := r.Add(ctx, "replica", readOnlyDatabase(t))
	if !errors.Is(err, placement.ErrReadOnly) || !strings.Contains(err.Error(), "takes no writes") {
		t.Fatalf("Add of a database that takes no writes: %v; want ErrReadOnly, saying it takes no writes", err)
	}
	ds, err := catalog.Databases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.Name == "replica" {
			t.Fatal("the database that takes no writes was registered")
		}
	}
}

// TestChooseSkipsADatabaseThatTakesNoWrites: a registered database that
// answers but takes no writes is not chosen for a new tenant, however few
// tenants it holds; the choice goes to the next one that takes writes,
// and a warning says why it was skipped.
func TestChooseSkipsADatabaseThatTakesNoWrites(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	main := catalogPool(t)
	log := &testenv.LogBuffer{}
	roURL := testenv.Postgres(t)
	r := placement.New(placement.Options{MainPool: main, URLs: map[string]string{"aaa-replica": roURL, "bbb-primary": testenv.Postgres(t)},
		Catalog: storage.NewPostgres(main), MaxConns: 2, Logger: slog.New(slog.NewTextHandler(log, nil))})
	t.Cleanup(func() { _ = r.Close() })
	if err := r.Register(ctx); err != nil {
		t.Fatal(err)
	}
	// Set read-only once registered, as a failover or an operator does.
	conn, err := pgx.Connect(ctx, roURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{conn.Config().Database}.Sanitize()+
		" SET default_transaction_read_only = on"); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)
	// Every database is empty: ties go by name, the read-only one first.
	got, err := r.Choose(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got != "bbb-primary" {
		t.Fatalf("Choose = %s, want bbb-primary (aaa-replica takes no writes)", got)
	}
	if !strings.Contains(log.String(), "takes no writes") {
		t.Errorf("no warning that aaa-replica takes no writes:\n%s", log)
	}
}

// TestCheckConfiguredWarnsOfADatabaseThatTakesNoWrites: a
// TENANT_DATABASES database that answers but takes no writes at start
// does not stop the start (a failover may be under way), but a warning
// says that it takes no writes, naming it, rather than nothing.
func TestCheckConfiguredWarnsOfADatabaseThatTakesNoWrites(t *testing.T) {
	t.Parallel()
	main := catalogPool(t)
	log := &testenv.LogBuffer{}
	r := placement.New(placement.Options{MainPool: main, URLs: map[string]string{"replica": readOnlyDatabase(t)},
		Catalog: storage.NewPostgres(main), MaxConns: 2, Logger: slog.New(slog.NewTextHandler(log, nil))})
	t.Cleanup(func() { _ = r.Close() })
	if err := r.CheckConfigured(t.Context()); err != nil {
		t.Fatalf("CheckConfigured with a database that takes no writes: %v", err)
	}
	if s := log.String(); !strings.Contains(s, "takes no writes") || !strings.Contains(s, "database=replica") {
		t.Fatalf("no warning that replica takes no writes:\n%s", s)
	}
}
