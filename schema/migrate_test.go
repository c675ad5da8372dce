package schema

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/invoice"
)

func TestMigrationsEmbedded(t *testing.T) {
	t.Parallel()
	ms := Migrations()
	if len(ms) != LatestVersion() || LatestVersion() < 2 {
		t.Fatalf("Migrations() = %d, LatestVersion() = %d", len(ms), LatestVersion())
	}
	want := []string{"init", "invoices_customer_idx", "invoicer_app_model", "customers_email_unique", "minor_units_c_collation", "invoices_overdue_idx"}
	for i, m := range ms {
		if m.Version != i+1 || m.Name != want[i] || m.sql != "" {
			t.Errorf("migration %d = %+v", i, m)
		}
	}
	for _, m := range embedded {
		if strings.Contains(m.sql, "tenant_") {
			t.Errorf("migration %d names a schema; migrations must use unqualified names", m.Version)
		}
	}
}

func TestMigrateFreshThenNoop(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	ctx := context.Background()

	res, err := Migrate(ctx, b.pool, "tenant_acme", 1)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || res.From != 0 || res.To != 1 || !slices.Equal(res.Applied, []int{1}) || res.Schema != "tenant_acme" {
		t.Errorf("to 1: %+v", res)
	}
	res, err = Migrate(ctx, b.pool, "tenant_acme", 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created || res.From != 1 || res.To != LatestVersion() || !slices.Equal(res.Applied, []int{2, 3, 4, 5, 6}) {
		t.Errorf("to latest: %+v", res)
	}
	// No-op: one query, no lock, nothing applied; a lower target does not go down.
	for _, target := range []int{0, 1} {
		before := b.count.queries.Load()
		res, err = Migrate(ctx, b.pool, "tenant_acme", target)
		if err != nil {
			t.Fatal(err)
		}
		if n := b.count.queries.Load() - before; n != 1 {
			t.Errorf("no-op migrate to %d sent %d queries, want 1", target, n)
		}
		if res.Applied != nil || res.From != LatestVersion() || res.To != LatestVersion() || res.Created {
			t.Errorf("no-op to %d: %+v", target, res)
		}
	}
	if v, err := Version(ctx, b.pool, "tenant_acme"); v != LatestVersion() || err != nil {
		t.Errorf("Version = %d, %v", v, err)
	}
	for _, target := range []int{-1, LatestVersion() + 1} {
		if _, err := Migrate(ctx, b.pool, "tenant_acme", target); err == nil {
			t.Errorf("target %d: no error", target)
		}
	}

	// The tables of migration 1 and the index of migration 2, in the
	// tenant's schema and nowhere else.
	var tables []string
	rows, _ := b.pool.Query(ctx, `SELECT table_schema || '.' || table_name FROM information_schema.tables
		WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`)
	tables, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	wantTables := []string{"tenant_acme.customers", "tenant_acme.invoice_documents", "tenant_acme.invoice_reminders",
		"tenant_acme.invoices", "tenant_acme.line_items", "tenant_acme.schema_migrations"}
	if !slices.Equal(tables, wantTables) {
		t.Errorf("tables = %v, want %v", tables, wantTables)
	}
	var idx int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_indexes WHERE schemaname = 'tenant_acme'
		AND indexname IN ('invoices_customer_id_idx', 'invoices_status_due_date_idx')`).Scan(&idx); err != nil || idx != 2 {
		t.Errorf("indexes: %d, %v", idx, err)
	}
	// Constraints are real: a bad status is refused.
	err = InTenant(tenantCtx(ctx, "tenant_acme"), b.pool, func(ctx context.Context, tx pgx.Tx) error {
		_, err := invoice.Create(ctx, tx, invoice.New{Number: "1", Status: "lost", Currency: "EUR",
			Customer: invoice.Customer{Name: "c", Email: "c@x"}})
		return err
	})
	if pgCode(err) != "23514" {
		t.Errorf("invoice with status 'lost': err = %v, want check violation", err)
	}
}

// A failing first step leaves no schema behind.
func TestMigrateFailedFirstStepLeavesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	ctx := context.Background()
	set := []Migration{{Version: 1, Name: "broken", sql: "CREATE TABLE customers (id int); SELECT 1/0"}}
	if _, err := migrate(ctx, b.pool, "tenant_acme", 0, set); pgCode(err) != "22012" {
		t.Errorf("err = %v, want division by zero", err)
	}
	if ok, err := Exists(ctx, b.pool, "tenant_acme"); ok || err != nil {
		t.Errorf("schema exists after failed first step: %v, %v", ok, err)
	}
}

// withStep returns the embedded migrations plus a step that runs hook.
func withStep(name string, hook func(ctx context.Context, tx pgx.Tx) error) []Migration {
	set := slices.Clone(embedded)
	return append(set, Migration{Version: len(set) + 1, Name: name, run: hook})
}

// P8: one tenant migrated by 8 goroutines at once applies each step once,
// and never runs two steps of that tenant at the same time.
func TestMigrateSameTenantConcurrently(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	ctx := context.Background()
	var inside, maxInside, runs atomic.Int32
	set := withStep("observed", func(ctx context.Context, tx pgx.Tx) error {
		n := inside.Add(1)
		defer inside.Add(-1)
		for {
			m := maxInside.Load()
			if n <= m || maxInside.CompareAndSwap(m, n) {
				break
			}
		}
		runs.Add(1)
		time.Sleep(50 * time.Millisecond)
		return nil
	})
	results := make([]MigrateResult, 8)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() { results[i], errs[i] = migrate(ctx, b.pool, "tenant_acme", 0, set) })
	}
	wg.Wait()
	var applied []int
	created := 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if r.To != len(set) {
			t.Errorf("goroutine %d ended at %d, want %d", i, r.To, len(set))
		}
		applied = append(applied, r.Applied...)
		if r.Created {
			created++
		}
	}
	slices.Sort(applied)
	var want []int
	for _, m := range set {
		want = append(want, m.Version)
	}
	if !slices.Equal(applied, want) {
		t.Errorf("applied across goroutines = %v, want each of %v once", applied, want)
	}
	if created != 1 {
		t.Errorf("%d goroutines report creating the schema, want 1", created)
	}
	if runs.Load() != 1 || maxInside.Load() != 1 {
		t.Errorf("observed step ran %d times, at most %d at once; want 1, 1", runs.Load(), maxInside.Load())
	}
	var rowsN int
	if err := b.pool.QueryRow(ctx, "SELECT count(*) FROM tenant_acme.schema_migrations").Scan(&rowsN); err != nil || rowsN != len(set) {
		t.Errorf("schema_migrations rows = %d (%v), want %d", rowsN, err, len(set))
	}
	res, err := migrate(ctx, b.pool, "tenant_acme", 0, set)
	if err != nil || res.Applied != nil || res.From != len(set) {
		t.Errorf("second run: %+v, %v", res, err)
	}
}

// P8: two tenants migrate at the same time. Each tenant's step waits until
// the other tenant's step is running too, inside its own tenant lock: with
// one global lock they could never both be inside, and the test fails.
func TestMigrateTenantsInParallel(t *testing.T) {
	t.Parallel()
	b := setup(t, 4)
	ctx := context.Background()
	var arrived atomic.Int32
	errTimeout := errors.New("the other tenant's step never ran alongside")
	set := withStep("rendezvous", func(ctx context.Context, tx pgx.Tx) error {
		arrived.Add(1)
		// The other tenant gets here after its whole migration, real DDL
		// that takes seconds on a loaded machine: the bound only names
		// the failure (one global lock never lets it arrive).
		deadline := time.Now().Add(time.Minute)
		for arrived.Load() < 2 {
			if time.Now().After(deadline) {
				return errTimeout
			}
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	})
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []string{"tenant_acme", "tenant_globex"} {
		wg.Go(func() { _, errs[i] = migrate(ctx, b.pool, s, 0, set) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// A step whose DDL cannot get its table lock (a long transaction of the
// app reads the table) gives up after stepLockTimeout, rolled back whole,
// instead of waiting in the lock queue, where every later statement of the
// tenant on that table would queue behind it until the task's deadline.
func TestMigrateStepGivesUpWaitingForATableLock(t *testing.T) {
	t.Parallel()
	b := setup(t, 4)
	ctx := context.Background()
	if _, err := Migrate(ctx, b.pool, "tenant_acme", 2); err != nil {
		t.Fatal(err)
	}
	// The app's long transaction: it holds an ACCESS SHARE lock on
	// invoices, which version 3's ALTER TABLE invoices must wait for.
	app, err := pgx.Connect(ctx, b.url)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(ctx)
	appTx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer appTx.Rollback(ctx) //nolint:errcheck
	if _, err := appTx.Exec(ctx, "SELECT count(*) FROM tenant_acme.invoices"); err != nil {
		t.Fatal(err)
	}

	// The bound is far beyond stepLockTimeout: without a lock timeout the
	// step waits for it and fails with the context's error instead.
	mctx, cancel := context.WithTimeout(ctx, stepLockTimeout+time.Minute)
	defer cancel()
	res, err := Migrate(mctx, b.pool, "tenant_acme", 0)
	if pgCode(err) != "55P03" {
		t.Fatalf("migrate with invoices locked: %+v, %v; want lock_not_available (55P03)", res, err)
	}
	if res.To != 2 || res.Applied != nil {
		t.Errorf("result = %+v, want nothing applied, still at 2", res)
	}
	if v, err := Version(ctx, b.pool, "tenant_acme"); v != 2 || err != nil {
		t.Errorf("version after the failed step = %d, %v; want 2 (the step is all or nothing)", v, err)
	}
	var amount bool
	if err := b.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_schema = 'tenant_acme' AND table_name = 'invoices' AND column_name = 'amount')`).Scan(&amount); err != nil || amount {
		t.Errorf("invoices.amount exists after the failed step: %v, %v", amount, err)
	}

	// Once the app's transaction ends, the migration goes through.
	if err := appTx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	res, err = Migrate(ctx, b.pool, "tenant_acme", 0)
	if err != nil || res.To != LatestVersion() || !slices.Equal(res.Applied, []int{3, 4, 5, 6}) {
		t.Errorf("migrate after the lock went: %+v, %v", res, err)
	}
}
