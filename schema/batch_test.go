package schema

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/tenantctx"
)

// P1 + P3 for the pipelined units: one connection, two tenants with
// identical tables, interleaved units of InTenantBatch and InTenantBatches
// in random order, many ending badly, in the default and in PgBouncer's
// exec mode. Every read sees only its own tenant's row, nothing of a failed
// unit is committed, and after every unit a fresh acquire shows an empty
// search_path.
func TestInTenantBatchIsolationOnOneConnection(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	tenants := []string{"tenant_acme", "tenant_globex"}
	for _, s := range tenants {
		migrateTenant(t, b.pool, s)
	}
	type kind int
	const (
		read       kind = iota // one round trip
		readTwice              // InTenantBatches, a read in each batch
		panics                 // next inserts nothing, panics
		timeout                // pg_sleep past ctx's deadline
		divZero                // a failing statement after an insert
		syntax                 // a failing statement in the last batch, after an insert in the first
		nextFails              // insert in the first batch, next returns an error
		sessionSet             // a session-level set_config: committed, connection destroyed
		numKinds
	)
	errFn := errors.New("unit failed on purpose")
	insert := "INSERT INTO customers (name, email) VALUES ('intruder', 'x' || pg_catalog.random() || '@x')"
	for _, mode := range []string{"cache_statement", "exec"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			sep := "?"
			if strings.Contains(b.url, "?") {
				sep = "&"
			}
			pool, _ := newTestPool(t, b.url+sep+"default_query_exec_mode="+mode, 1, nil)
			const units = 400
			work := make([]kind, units)
			for i := range work {
				work[i] = kind(i % int(numKinds))
			}
			rand.Shuffle(len(work), func(i, j int) { work[i], work[j] = work[j], work[i] })
			var mu sync.Mutex
			var failed []string
			fail := func(format string, args ...any) {
				mu.Lock()
				defer mu.Unlock()
				if len(failed) < 20 {
					failed = append(failed, fmt.Sprintf(format, args...))
				}
			}
			run := func(i int, k kind, schemaName, other string) {
				ctx := tenantCtx(context.Background(), schemaName)
				var cancel context.CancelFunc = func() {}
				if k == timeout {
					ctx, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
				}
				defer cancel()
				var names, names2 []string
				readInto := func(b *pgx.Batch, dst *[]string) {
					b.Queue("SELECT name FROM customers ORDER BY id").Query(func(rows pgx.Rows) error {
						var err error
						*dst, err = pgx.CollectRows(rows, pgx.RowTo[string])
						return err
					})
				}
				var err error
				func() {
					defer func() {
						if p := recover(); p != nil {
							if k != panics || p != "unit panics" {
								panic(p)
							}
							err = errFn
						}
					}()
					first := &pgx.Batch{}
					switch k {
					case read:
						readInto(first, &names)
						err = InTenantBatch(ctx, pool, first)
					case readTwice:
						readInto(first, &names)
						err = InTenantBatches(ctx, pool, first, func(context.Context) (*pgx.Batch, error) {
							last := &pgx.Batch{}
							readInto(last, &names2)
							return last, nil
						})
					case panics:
						first.Queue(insert)
						err = InTenantBatches(ctx, pool, first, func(context.Context) (*pgx.Batch, error) { panic("unit panics") })
					case timeout:
						first.Queue(insert)
						first.Queue("SELECT pg_sleep(5)")
						err = InTenantBatch(ctx, pool, first)
					case divZero:
						first.Queue(insert)
						first.Queue("SELECT 1/0")
						err = InTenantBatch(ctx, pool, first)
					case syntax:
						first.Queue(insert)
						err = InTenantBatches(ctx, pool, first, func(context.Context) (*pgx.Batch, error) {
							last := &pgx.Batch{}
							last.Queue("SELEC name FROM customers")
							return last, nil
						})
					case nextFails:
						first.Queue(insert)
						err = InTenantBatches(ctx, pool, first, func(context.Context) (*pgx.Batch, error) { return nil, errFn })
					case sessionSet:
						first.Queue("SELECT pg_catalog.set_config('search_path', $1, false)", other)
						err = InTenantBatch(ctx, pool, first)
					}
				}()
				switch k {
				case read, readTwice:
					if err != nil || !slices.Equal(names, []string{schemaName}) {
						fail("unit %d: read in %s saw %v (err %v), want only [%s]", i, schemaName, names, err, schemaName)
					}
					if k == readTwice && !slices.Equal(names2, names) {
						fail("unit %d: second read saw %v", i, names2)
					}
				case sessionSet:
					if err != nil {
						fail("unit %d: session set: %v", i, err)
					}
				case timeout:
					if !errors.Is(err, context.DeadlineExceeded) && pgCode(err) != "57014" {
						fail("unit %d: timeout unit: err = %v", i, err)
					}
				default:
					if err == nil {
						fail("unit %d: kind %d succeeded", i, k)
					}
				}
				if path, _ := sessionSearchPath(t, pool); !isEmptyPath(path) {
					fail("unit %d (kind %d): fresh acquire has search_path %q", i, k, path)
				}
			}
			next := make(chan int)
			var wg sync.WaitGroup
			for range 6 {
				wg.Go(func() {
					for i := range next {
						s, other := tenants[0], tenants[1]
						if rand.IntN(2) == 1 {
							s, other = other, s
						}
						run(i, work[i], s, other)
					}
				})
			}
			for i := range work {
				next <- i
			}
			close(next)
			wg.Wait()
			for _, f := range failed {
				t.Error(f)
			}
		})
	}
	t.Cleanup(func() {
		// Nothing from the failed units was committed anywhere.
		var n int
		if err := b.pool.QueryRow(context.Background(),
			"SELECT (SELECT count(*) FROM tenant_acme.customers) + (SELECT count(*) FROM tenant_globex.customers)").Scan(&n); err != nil || n != 2 {
			t.Errorf("customers in both tenants: %d (err %v), want 2", n, err)
		}
	})
}

func TestInTenantBatchNoTenantSendsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	for name, ctx := range map[string]context.Context{
		"no tenant":   context.Background(),
		"zero tenant": tenantctx.WithTenant(context.Background(), tenantctx.Tenant{}),
	} {
		batch := &pgx.Batch{}
		batch.Queue("SELECT 1")
		if err := InTenantBatch(ctx, b.pool, batch); !errors.Is(err, ErrNoTenant) {
			t.Errorf("%s: InTenantBatch = %v, want ErrNoTenant", name, err)
		}
		called := false
		err := InTenantBatches(ctx, b.pool, batch, func(context.Context) (*pgx.Batch, error) { called = true; return nil, nil })
		if !errors.Is(err, ErrNoTenant) || called {
			t.Errorf("%s: InTenantBatches = %v (next called: %v), want ErrNoTenant", name, err, called)
		}
		if err := QueueLockShared(ctx, batch); !errors.Is(err, ErrNoTenant) || batch.Len() != 1 {
			t.Errorf("%s: QueueLockShared = %v, %d queued; want ErrNoTenant, nothing queued", name, err, batch.Len())
		}
	}
	if n := b.count.total(); n != 0 {
		t.Errorf("%d queries/acquires sent without a tenant, want 0", n)
	}
}

// The point of InTenantBatch: BEGIN, the pin, the statements, COMMIT and
// the clean-connection check are one write to the server (one round trip),
// and the release needs no query of its own. InTenantBatches is two, and
// InTenant around one query three, its pin and check prepared statements
// (planned once per connection) where pgx caches statements.
func TestInTenantBatchIsOneRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	migrateTenant(t, b.pool, "tenant_acme")
	for _, mode := range []string{"cache_statement", "exec"} {
		sep := "?"
		if strings.Contains(b.url, "?") {
			sep = "&"
		}
		var writes atomic.Int64
		pool, _ := newTestPool(t, b.url+sep+"default_query_exec_mode="+mode, 1, func(cfg *pgxpool.Config) {
			dial := cfg.ConnConfig.DialFunc
			cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := dial(ctx, network, addr)
				return writeCounter{Conn: c, n: &writes}, err
			}
		})
		ctx := tenantCtx(context.Background(), "tenant_acme")
		unit := func() ([]string, error) {
			var names []string
			batch := &pgx.Batch{}
			batch.Queue("SELECT name FROM customers WHERE id > $1 ORDER BY id", 0).Query(func(rows pgx.Rows) error {
				var err error
				names, err = pgx.CollectRows(rows, pgx.RowTo[string])
				return err
			})
			return names, InTenantBatch(ctx, pool, batch)
		}
		// Connect, and in cache_statement mode prepare: the unit's own
		// statements in its first run, BEGIN and the pin in the second
		// (pgx forgets every statement of a batch whose prepare failed).
		for range 2 {
			if _, err := unit(); err != nil {
				t.Fatalf("%s: %v", mode, err)
			}
		}
		before := writes.Load()
		names, err := unit()
		if err != nil || !slices.Equal(names, []string{"tenant_acme"}) {
			t.Fatalf("%s: %v, %v", mode, names, err)
		}
		if n := writes.Load() - before; n != 1 {
			t.Errorf("%s: InTenantBatch wrote %d times to the server, want 1 (one round trip, release included)", mode, n)
		}
		before = writes.Load()
		err = InTenantBatches(ctx, pool, &pgx.Batch{}, func(context.Context) (*pgx.Batch, error) { return nil, nil })
		if n := writes.Load() - before; err != nil || n != 2 {
			t.Errorf("%s: InTenantBatches wrote %d times (err %v), want 2", mode, n, err)
		}
		// InTenant on a connection of its own, which no InTenantBatch
		// prepared statements on.
		var inTenantWrites atomic.Int64
		pool, _ = newTestPool(t, b.url+sep+"default_query_exec_mode="+mode, 1, func(cfg *pgxpool.Config) {
			dial := cfg.ConnConfig.DialFunc
			cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := dial(ctx, network, addr)
				return writeCounter{Conn: c, n: &inTenantWrites}, err
			}
		})
		inTenant := func() ([]string, error) {
			var names []string
			err := InTenant(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
				var err error
				names, err = customerNames(ctx, tx)
				return err
			})
			return names, err
		}
		for range 2 { // pgx prepares the begin and end statements in the first
			if _, err := inTenant(); err != nil {
				t.Fatalf("%s: InTenant: %v", mode, err)
			}
		}
		before = inTenantWrites.Load()
		names, err = inTenant()
		if n := inTenantWrites.Load() - before; err != nil || n != 3 || !slices.Equal(names, []string{"tenant_acme"}) {
			t.Errorf("%s: InTenant read %v and wrote %d times (err %v), want [tenant_acme] and 3", mode, names, n, err)
		}
		if mode == "cache_statement" {
			// The pin and the check are protocol-level prepared statements of
			// the connection, not simple-protocol text planned every time.
			var prepared int
			err := pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE NOT from_sql AND statement = ANY($1)",
				[]string{ownedPinSQL, verifyUnitSQL}).Scan(&prepared)
			if err != nil || prepared != 2 {
				t.Errorf("pin and check prepared on the connection: %d of 2 (err %v)", prepared, err)
			}
		}
	}
}

// writeCounter counts writes to a connection.
type writeCounter struct {
	net.Conn
	n *atomic.Int64
}

func (w writeCounter) Write(p []byte) (int, error) {
	w.n.Add(1)
	return w.Conn.Write(p)
}

// The shared lock queued into a unit holds off Drop until the unit ends.
func TestQueueLockSharedHoldsOffDrop(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	migrateTenant(t, b.pool, "tenant_acme")
	ctx := tenantCtx(context.Background(), "tenant_acme")
	first := &pgx.Batch{}
	if err := QueueLockShared(ctx, first); err != nil {
		t.Fatal(err)
	}
	dropped := make(chan error, 1)
	err := InTenantBatches(ctx, b.pool, first, func(context.Context) (*pgx.Batch, error) {
		go func() { dropped <- Drop(context.Background(), b.pool, "tenant_acme") }()
		select {
		case err := <-dropped:
			return nil, fmt.Errorf("Drop finished while the unit held the shared lock: %v", err)
		case <-time.After(300 * time.Millisecond):
		}
		last := &pgx.Batch{}
		last.Queue("INSERT INTO customers (name, email) VALUES ('late', 'late@x')")
		return last, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-dropped; err != nil {
		t.Fatalf("Drop after the unit: %v", err)
	}
	if ok, _ := Exists(context.Background(), b.pool, "tenant_acme"); ok {
		t.Error("schema still exists after Drop")
	}
}

// TestCausedByDone: an error that comes with a done context says so; one
// that already does, or comes with a live context, is kept as it is.
func TestCausedByDone(t *testing.T) {
	prep := errors.New("error preprocessing batch (prepare): relation \"customers\" does not exist")
	done, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	if err := causedByDone(done, prep); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, prep) {
		t.Errorf("done context: %v, want both the deadline and the error", err)
	}
	if err := causedByDone(context.Background(), prep); err != prep {
		t.Errorf("live context: %v, want the error as is", err)
	}
	wrapped := fmt.Errorf("in tenant x: %w", context.DeadlineExceeded)
	if err := causedByDone(done, wrapped); err != wrapped {
		t.Errorf("error that says so already: %v", err)
	}
	if err := causedByDone(done, nil); err != nil {
		t.Errorf("nil error: %v", err)
	}
}

// The statements that set a unit up (the shared lock, generic plans),
// queued first, are folded into the pin's statement: the unit still holds
// the lock in shared mode and uses generic plans, pinned to its schema.
func TestPinStatementFoldsSetUp(t *testing.T) {
	t.Parallel()
	ctx := tenantCtx(context.Background(), "tenant_acme")
	queue := func(steps ...string) *pgx.Batch {
		b := &pgx.Batch{}
		for _, s := range steps {
			switch s {
			case "lock":
				if err := QueueLockShared(ctx, b); err != nil {
					t.Fatal(err)
				}
			case "generic":
				QueueGenericPlans(b)
			default:
				b.Queue(s)
			}
		}
		return b
	}
	const (
		lockCol    = "pg_catalog.pg_advisory_xact_lock_shared($%d::int4, pg_catalog.hashtext($%d))"
		genericCol = "pg_catalog.set_config('plan_cache_mode', 'force_generic_plan', true)"
		timeoutCol = "pg_catalog.set_config('statement_timeout', $4, true)"
	)
	acme := tenantctx.Tenant{ID: "tn_acme", Schema: "tenant_acme"}
	pin := []any{`"tenant_acme"`, "tenant_acme", ownerPrefix + "tn_acme"}
	with := func(extra ...any) []any { return append(slices.Clone(pin), extra...) }
	for _, c := range []struct {
		steps   []string
		timeout time.Duration
		folded  int
		sql     string
		args    []any
	}{
		{nil, 0, 0, ownedPinSQL, pin},
		{[]string{"SELECT 1"}, 0, 0, ownedPinSQL, pin},
		{[]string{"lock", "generic", "SELECT 1"}, 0, 2, ownedPinSQL + ", " + fmt.Sprintf(lockCol, 4, 5) + ", " + genericCol, with(lockNamespace, "tenant_acme")},
		{[]string{"generic", "lock"}, 0, 2, ownedPinSQL + ", " + genericCol + ", " + fmt.Sprintf(lockCol, 4, 5), with(lockNamespace, "tenant_acme")},
		{[]string{"generic", "SELECT 1", "lock"}, 0, 1, ownedPinSQL + ", " + genericCol, pin},
		{[]string{"lock", "lock"}, 0, 1, ownedPinSQL + ", " + fmt.Sprintf(lockCol, 4, 5), with(lockNamespace, "tenant_acme")},
		{nil, 1500 * time.Microsecond, 0, ownedPinSQL + ", " + timeoutCol, with("2")},
		{[]string{"lock", "generic"}, 3 * time.Second, 2, ownedPinSQL + ", " + timeoutCol + ", " + fmt.Sprintf(lockCol, 5, 6) + ", " + genericCol, with("3000", lockNamespace, "tenant_acme")},
	} {
		sql, args, folded := pinStatement(acme, `"tenant_acme"`, queue(c.steps...), c.timeout, false)
		if sql != c.sql || !slices.Equal(args, c.args) || folded != c.folded {
			t.Errorf("%v, timeout %s: %q %v, %d folded; want %q %v, %d folded", c.steps, c.timeout, sql, args, folded, c.sql, c.args, c.folded)
		}
	}
	if _, _, folded := pinStatement(acme, `"tenant_acme"`, nil, 0, false); folded != 0 {
		t.Errorf("nil batch: %d folded", folded)
	}
	// A unit idle between two round trips: the idle timeout takes the
	// deadline's value too; without a deadline, neither is set.
	idleCol := "pg_catalog.set_config('idle_in_transaction_session_timeout', $4, true)"
	if sql, args, _ := pinStatement(acme, `"tenant_acme"`, nil, 3*time.Second, true); sql != ownedPinSQL+", "+timeoutCol+", "+idleCol || !slices.Equal(args, with("3000")) {
		t.Errorf("idle unit with a deadline: %q %v", sql, args)
	}
	if sql, _, _ := pinStatement(acme, `"tenant_acme"`, nil, 0, true); sql != ownedPinSQL {
		t.Errorf("idle unit without a deadline: %q", sql)
	}

	b := setup(t, 0)
	migrateTenant(t, b.pool, "tenant_acme")
	first := queue("lock", "generic")
	var path, mode string
	var locks int
	first.Queue(`SELECT current_setting('search_path'), current_setting('plan_cache_mode'),
	                    (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND mode = 'ShareLock' AND granted AND classid::bigint = $1)`, int64(lockNamespace)).
		QueryRow(func(row pgx.Row) error { return row.Scan(&path, &mode, &locks) })
	if err := InTenantBatch(ctx, b.pool, first); err != nil {
		t.Fatal(err)
	}
	if path != `"tenant_acme"` || mode != "force_generic_plan" || locks != 1 {
		t.Errorf("in the unit: search_path %q, plan_cache_mode %q, %d shared advisory locks; want the tenant's, force_generic_plan, 1", path, mode, locks)
	}
}

// A unit whose context has a deadline runs with statement_timeout set to
// the time left (SET LOCAL), so the server cancels a statement that
// outlives the deadline even when pgx's cancel request comes too early to
// count, and the unit's COMMIT, already sent, does not commit; a unit
// without a deadline keeps the server's setting.
func TestInTenantBatchDeadlineReachesServer(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	migrateTenant(t, b.pool, "tenant_acme")
	timeoutIn := func(ctx context.Context) string {
		t.Helper()
		var v string
		first := &pgx.Batch{}
		first.Queue("SELECT current_setting('statement_timeout')").QueryRow(func(row pgx.Row) error { return row.Scan(&v) })
		if err := InTenantBatch(ctx, b.pool, first); err != nil {
			t.Fatal(err)
		}
		return v
	}
	ctx := tenantCtx(context.Background(), "tenant_acme")
	if v := timeoutIn(ctx); v != "0" {
		t.Errorf("statement_timeout without a deadline = %q, want 0", v)
	}
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	v := timeoutIn(dctx)
	if d, err := time.ParseDuration(strings.Replace(v, "min", "m", 1)); err != nil || d <= 50*time.Second || d > time.Minute {
		t.Errorf("statement_timeout with a minute left = %q, want about a minute", v)
	}
	if v := timeoutIn(ctx); v != "0" {
		t.Errorf("statement_timeout in the next unit = %q, want 0 again", v)
	}
	// A deadline further away than statement_timeout can say sets nothing
	// (PostgreSQL would refuse the value, and the unit with it).
	far, cancelFar := context.WithTimeout(ctx, 30*24*time.Hour)
	defer cancelFar()
	if v := timeoutIn(far); v != "0" {
		t.Errorf("statement_timeout with 30 days left = %q, want 0", v)
	}
	if d := deadlineTimeout(far); d != 0 {
		t.Errorf("deadlineTimeout with 30 days left = %s, want 0", d)
	}
	edge, cancelEdge := context.WithTimeout(ctx, maxStatementTimeout-time.Minute)
	defer cancelEdge()
	if v := timeoutIn(edge); v == "0" {
		t.Errorf("statement_timeout with %s left = %q, want it set", maxStatementTimeout-time.Minute, v)
	}
	// A statement pgx cannot prepare outside the pin (an unqualified
	// table) takes begin's other way in, "BEGIN; SET LOCAL ...": the
	// deadline goes along there too.
	var fallback string
	var customers int
	first := &pgx.Batch{}
	first.Queue("SELECT current_setting('statement_timeout'), (SELECT count(*) FROM customers)").
		QueryRow(func(row pgx.Row) error { return row.Scan(&fallback, &customers) })
	if err := InTenantBatch(dctx, b.pool, first); err != nil {
		t.Fatal(err)
	}
	if d, err := time.ParseDuration(strings.Replace(fallback, "min", "m", 1)); err != nil || d <= 50*time.Second || d > time.Minute {
		t.Errorf("statement_timeout after a failed prepare, with a minute left = %q, want about a minute", fallback)
	}

	// Two round trips: the second sets statement_timeout again when next
	// took a while, to the time left, and leaves it otherwise.
	twoTrips := func(pause time.Duration) (before, after, took time.Duration) {
		t.Helper()
		var v1, v2 string
		first := &pgx.Batch{}
		first.Queue("SELECT current_setting('statement_timeout')").QueryRow(func(row pgx.Row) error { return row.Scan(&v1) })
		start := time.Now()
		defer func() { took = time.Since(start) }()
		err := InTenantBatches(dctx, b.pool, first, func(context.Context) (*pgx.Batch, error) {
			time.Sleep(pause)
			last := &pgx.Batch{}
			last.Queue("SELECT current_setting('statement_timeout')").QueryRow(func(row pgx.Row) error { return row.Scan(&v2) })
			return last, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []struct {
			v string
			d *time.Duration
		}{{v1, &before}, {v2, &after}} {
			d, err := time.ParseDuration(strings.Replace(p.v, "min", "m", 1))
			if err != nil {
				t.Fatalf("statement_timeout %q: %v", p.v, err)
			}
			*p.d = d
		}
		return before, after, 0
	}
	if before, after, _ := twoTrips(300 * time.Millisecond); after > before-250*time.Millisecond {
		t.Errorf("statement_timeout after next took 300 ms: %s, then %s; want it set again to the time left", before, after)
	}
	// A unit whose first round trip and next took under retimeAfter keeps
	// the setting (on a loaded machine the round trip alone may take
	// longer; then the setting may be renewed, never raised).
	if before, after, took := twoTrips(0); after > before || (took < retimeAfter && after != before) {
		t.Errorf("statement_timeout after a quick next (the unit took %s): %s, then %s; want it left as it was", took, before, after)
	}

	short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	first = &pgx.Batch{}
	first.Queue("INSERT INTO customers (name, email) VALUES ('late', 'late@x')")
	first.Queue("SELECT pg_sleep(3)")
	start := time.Now()
	err := InTenantBatch(short, b.pool, first)
	if !errors.Is(err, context.DeadlineExceeded) && pgCode(err) != "57014" {
		t.Fatalf("unit past its deadline: %v, want the deadline or 57014", err)
	}
	// The backend of the unit would have run pg_sleep to its end and
	// committed 3 s after it started; wait past that.
	time.Sleep(time.Until(start.Add(3500 * time.Millisecond)))
	var n int
	if err := b.pool.QueryRow(context.Background(), "SELECT count(*) FROM tenant_acme.customers WHERE name = 'late'").Scan(&n); err != nil || n != 0 {
		t.Errorf("rows of the unit past its deadline: %d (err %v), want 0", n, err)
	}
}
