package worker_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// setReadOnly makes pool's database take no writes (on) or take them
// again (off), as a primary demoted to a hot standby by a failover, or set
// read-only by an operator, does: default_transaction_read_only for the
// database, and the pool's connections made anew, so that every
// connection answers SQLSTATE 25006 to a write.
func setReadOnly(t *testing.T, pool *pgxpool.Pool, on bool) {
	t.Helper()
	db := pgx.Identifier{pool.Config().ConnConfig.Database}.Sanitize()
	sql := "ALTER DATABASE " + db + " RESET default_transaction_read_only"
	if on {
		sql = "ALTER DATABASE " + db + " SET default_transaction_read_only = on"
	}
	// A transaction of its own read-write: the pool's are read-only once
	// the setting is on.
	ctx := context.Background()
	if err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{AccessMode: pgx.ReadWrite}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, sql)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	pool.Reset()
}

// TestReadOnlyDatabaseIsAWait: a database that takes no writes for a
// while (SQLSTATE 25006 read_only_sql_transaction: a primary demoted to a
// hot standby by a failover, a server set read-only) makes a render, the
// overdue check and a reminder wait (ErrDatabaseUnavailable: not a
// failure, outcome not_ready), as an unreachable one does, and no email
// goes out; once it takes writes again they run, and the reminder sends
// one email.
func TestReadOnlyDatabaseIsAWait(t *testing.T) {
	t.Parallel()
	m := &countingMailer{}
	e := newHandlerEnv(t, m)
	tn := e.provision(t, "read-only", "Read Only AG")
	id := e.addInvoice(t, tn, acmeCustomer, acmeInvoice)
	payloads := []tasks.Payload{
		tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: id},
		tasks.InvoicesOverdue{TenantID: tn.ID, Tick: 1700000000},
		tasks.InvoiceReminder{TenantID: tn.ID, InvoiceID: id, Day: tn.Day(e.now())},
	}

	setReadOnly(t, e.pool, true)
	t.Cleanup(func() { setReadOnly(t, e.pool, false) })
	for _, p := range payloads {
		err := e.work(p)
		if !errors.Is(err, worker.ErrDatabaseUnavailable) || worker.IsFailure(err) || worker.Outcome(err) != worker.OutcomeNotReady {
			t.Errorf("%s with its database read-only: %v (failure %t, outcome %s); want ErrDatabaseUnavailable, not a failure, not_ready",
				p.TypeName(), err, worker.IsFailure(err), worker.Outcome(err))
		}
	}
	if n := m.sent.Load(); n != 0 {
		t.Fatalf("%d emails sent while the database was read-only", n)
	}

	setReadOnly(t, e.pool, false)
	for _, p := range payloads {
		if err := e.work(p); err != nil {
			t.Errorf("%s once the database takes writes again: %v", p.TypeName(), err)
		}
	}
	if n := m.sent.Load(); n != 1 {
		t.Errorf("%d emails sent, want 1", n)
	}
}

// TestDatabaseBreakerHoldsAReadOnlyDatabase: a database found taking no
// writes opens its breaker, and the worker's probe
// (placement.Registry.Ping) keeps it held while the server is still
// read-only, as while it is unreachable: the tasks are held (no attempt
// of theirs meets the refusal again) instead of the breaker closing at
// each probe that reached the server. Once it takes writes again the
// probe closes it and the task runs.
func TestDatabaseBreakerHoldsAReadOnlyDatabase(t *testing.T) {
	t.Parallel()
	mainPool := openPool(t, testenv.Postgres(t), 4)
	if _, err := mainPool.Exec(t.Context(), "CREATE TABLE public.written (n int)"); err != nil {
		t.Fatal(err)
	}
	reg := newRegistry(t, placement.Options{MainPool: mainPool, MaxConns: 2, RefreshInterval: -1})
	catalog := memstore.New()
	tn := addTenant(t, catalog, "probe-read-only", tenantctx.StatusActive)
	c := newBreakerChain(t, worker.BreakerOptions{
		Probe: breakerProbe(reg),
		// Every attempt after the first probes itself (no background
		// probe within the test's time): the probe's own verdict is what
		// is checked.
		ProbeMin: time.Nanosecond, ProbeMax: time.Minute,
	}, catalog, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
			_, err := mainPool.Exec(ctx, "INSERT INTO public.written VALUES (1)")
			return err
		}),
	})
	run := func() error { return c.render(tn) }

	setReadOnly(t, mainPool, true)
	t.Cleanup(func() { setReadOnly(t, mainPool, false) })
	if err := run(); !errors.Is(err, worker.ErrDatabaseUnavailable) || worker.IsFailure(err) {
		t.Fatalf("first attempt on a read-only database: %v (failure %t); want ErrDatabaseUnavailable", err, worker.IsFailure(err))
	}
	if !c.breakers.Down(tenantctx.DefaultDatabase) {
		t.Fatal("main not held after a write was refused as read-only")
	}
	for i := range 3 {
		if err := run(); !errors.Is(err, worker.ErrDatabaseDown) || worker.IsFailure(err) {
			t.Fatalf("attempt %d after a probe of the read-only database: %v; want held (ErrDatabaseDown)", i+2, err)
		}
	}

	setReadOnly(t, mainPool, false)
	if err := run(); err != nil {
		t.Fatalf("attempt once the database takes writes again: %v", err)
	}
	if c.breakers.Down(tenantctx.DefaultDatabase) {
		t.Error("main still held once it takes writes again")
	}
}

// TestDatabaseBreakerSaysADatabaseTakesNoWrites: the breaker of a
// database held because it takes no writes (a replica's URL registered by
// mistake, a standby after a failover, default_transaction_read_only)
// says so in its warning, its still-held lines and its closing line,
// rather than calling a server that answers unreachable or down, which
// sends an operator looking for a network fault.
func TestDatabaseBreakerSaysADatabaseTakesNoWrites(t *testing.T) {
	t.Parallel()
	mainPool := openPool(t, testenv.Postgres(t), 4)
	if _, err := mainPool.Exec(t.Context(), "CREATE TABLE public.written (n int)"); err != nil {
		t.Fatal(err)
	}
	reg := newRegistry(t, placement.Options{MainPool: mainPool, MaxConns: 2, RefreshInterval: -1})
	catalog := memstore.New()
	tn := addTenant(t, catalog, "says-read-only", tenantctx.StatusActive)
	log := &recordedLog{}
	c := newBreakerChain(t, worker.BreakerOptions{
		Logger: slog.New(log), Probe: breakerProbe(reg),
		ProbeMin: time.Nanosecond, ProbeMax: time.Minute, SummaryEvery: time.Nanosecond,
	}, catalog, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
			_, err := mainPool.Exec(ctx, "INSERT INTO public.written VALUES (1)")
			return err
		}),
	})
	run := func() error { return c.render(tn) }

	setReadOnly(t, mainPool, true)
	t.Cleanup(func() { setReadOnly(t, mainPool, false) })
	for i := range 3 {
		if err := run(); !errors.Is(err, worker.ErrDatabaseUnavailable) {
			t.Fatalf("attempt %d on a read-only database: %v; want a wait", i+1, err)
		}
	}
	setReadOnly(t, mainPool, false)
	if err := run(); err != nil {
		t.Fatalf("attempt once the database takes writes again: %v", err)
	}
	for _, l := range []struct {
		level slog.Level
		msg   string
		want  bool
	}{
		{slog.LevelWarn, "database takes no writes: its tasks are held", true},
		{slog.LevelWarn, "database still takes no writes: its tasks are held", true},
		{slog.LevelInfo, "database takes writes again: its tasks run", true},
		{slog.LevelWarn, "unreachable", false},
		{slog.LevelWarn, "still down", false},
		{slog.LevelInfo, "reachable again", false},
	} {
		if n := log.count(l.level, l.msg); (n > 0) != l.want {
			log.mu.Lock()
			msgs := make([]string, 0, len(log.records))
			for _, r := range log.records {
				msgs = append(msgs, r.Level.String()+" "+r.Message)
			}
			log.mu.Unlock()
			t.Errorf("%d %s lines %q, want them %v; lines:\n%s", n, l.level, l.msg, map[bool]string{true: "logged", false: "not logged"}[l.want], strings.Join(msgs, "\n"))
		}
	}
}
