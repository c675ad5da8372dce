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
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/tenantctx"
)

// readNames queues the read of every customer name into b.
func readNames(b *pgx.Batch, dst *[]string) {
	b.Queue("SELECT name FROM customers ORDER BY id").Query(func(rows pgx.Rows) error {
		var err error
		*dst, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
}

// P1 + P3 for shared round trips: three tenants with identical tables,
// many concurrent callers on a pool of two connections, units that read,
// fail, time out, write and fail, or set search_path for the session (not
// coalesced). Every read sees only its own tenant's row, nothing of a
// failed unit is committed, the committed writes are all there, and after
// it all a fresh acquire shows an empty search_path.
func TestCoalescerIsolationUnderConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	tenants := []string{"tenant_acme", "tenant_globex", "tenant_initech"}
	for _, s := range tenants {
		migrateTenant(t, b.pool, s)
	}
	c := NewCoalescer(CoalescerOptions{})
	type kind int
	const (
		read       kind = iota
		divZero         // a failing statement
		failInsert      // an insert that fails: nothing committed
		timeout         // pg_sleep past ctx's deadline
		write           // an update that commits
		sessionSet      // a session-level set_config: not coalesced, connection destroyed
		noRow           // QueryRow without a row
		numKinds
	)
	const units = 600
	work := make([]kind, units)
	for i := range work {
		work[i] = kind(i % int(numKinds))
	}
	rand.Shuffle(len(work), func(i, j int) { work[i], work[j] = work[j], work[i] })
	var writes sync.Map // schema -> *atomic.Int64
	for _, s := range tenants {
		writes.Store(s, new(atomic.Int64))
	}
	var mu sync.Mutex
	var failed []string
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failed) < 20 {
			failed = append(failed, fmt.Sprintf(format, args...))
		}
	}
	run := func(i int, k kind, schemaName string) {
		ctx := tenantCtx(context.Background(), schemaName)
		timeoutIn := 5 * time.Second
		if k == timeout {
			timeoutIn = 30 * time.Millisecond
		}
		ctx, cancel := context.WithTimeout(ctx, timeoutIn)
		defer cancel()
		batch := &pgx.Batch{}
		var names []string
		var id int64
		switch k {
		case read:
			readNames(batch, &names)
		case divZero:
			batch.Queue("SELECT 1/(id - id) FROM customers")
		case failInsert:
			batch.Queue("INSERT INTO customers (name, email) SELECT 'intruder', 'x@x' FROM customers WHERE 1/(id - id) = 1")
		case timeout:
			batch.Queue("SELECT pg_sleep(5) FROM customers")
		case write:
			batch.Queue("UPDATE customers SET email = 'w' || (pg_catalog.split_part(email, '@', 1) || '@example.com') RETURNING id").QueryRow(func(row pgx.Row) error {
				return row.Scan(&id)
			})
		case sessionSet:
			batch.Queue("SELECT pg_catalog.set_config('search_path', $1, false)", "tenant_acme")
		case noRow:
			batch.Queue("SELECT id FROM customers WHERE id < 0").QueryRow(func(row pgx.Row) error {
				if err := row.Scan(&id); !errors.Is(err, pgx.ErrNoRows) {
					return fmt.Errorf("scan without a row: %v, want pgx.ErrNoRows", err)
				}
				return nil
			})
		}
		err := c.InTenantBatch(ctx, b.pool, batch)
		switch k {
		case read:
			if err != nil || !slices.Equal(names, []string{schemaName}) {
				fail("unit %d: read in %s saw %v (err %v), want only [%s]", i, schemaName, names, err, schemaName)
			}
		case write:
			if err != nil || id == 0 {
				fail("unit %d: write in %s: id %d, err %v", i, schemaName, id, err)
			} else {
				v, _ := writes.Load(schemaName)
				v.(*atomic.Int64).Add(1)
			}
		case sessionSet, noRow:
			if err != nil {
				fail("unit %d (kind %d): %v", i, k, err)
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
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			for i := range next {
				run(i, work[i], tenants[rand.IntN(len(tenants))])
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
	for _, s := range tenants {
		var names []string
		var emails int64
		err := InTenant(tenantCtx(context.Background(), s), b.pool, func(ctx context.Context, tx pgx.Tx) error {
			var err error
			if names, err = customerNames(ctx, tx); err != nil {
				return err
			}
			return tx.QueryRow(ctx, "SELECT pg_catalog.length(email) - pg_catalog.length(pg_catalog.ltrim(email, 'w')) FROM customers").Scan(&emails)
		})
		v, _ := writes.Load(s)
		if err != nil || !slices.Equal(names, []string{s}) || emails != v.(*atomic.Int64).Load() {
			t.Errorf("%s: customers %v, %d writes seen (err %v); want only [%s] and %d writes", s, names, emails, err, s, v.(*atomic.Int64).Load())
		}
	}
	for range 3 {
		if path, _ := sessionSearchPath(t, b.pool); !isEmptyPath(path) {
			t.Errorf("fresh acquire has search_path %q", path)
		}
	}
}

// Units that wait together go out together: with the pool's one
// connection held, every unit queues; once it is free, the first unit's
// round trip and one more carry them all.
func TestCoalescerSharesRoundTrips(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	tenants := []string{"tenant_acme", "tenant_globex"}
	for _, s := range tenants {
		migrateTenant(t, b.pool, s)
	}
	var writes atomic.Int64
	pool, _ := newTestPool(t, b.url, 1, func(cfg *pgxpool.Config) {
		dial := cfg.ConnConfig.DialFunc
		cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dial(ctx, network, addr)
			return writeCounter{Conn: conn, n: &writes}, err
		}
	})
	c := NewCoalescer(CoalescerOptions{MaxInFlight: 1})
	unit := func(schemaName string) ([]string, error) {
		var names []string
		batch := &pgx.Batch{}
		readNames(batch, &names)
		return names, c.InTenantBatch(tenantCtx(context.Background(), schemaName), pool, batch)
	}
	// Connect and prepare.
	if _, err := unit(tenants[0]); err != nil {
		t.Fatal(err)
	}
	held, err := pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	before := writes.Load()
	const n = 40
	results := make([][]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i], errs[i] = unit(tenants[i%2]) })
	}
	// Every unit is queued or in the first round trip, which waits for the
	// connection.
	for {
		c.mu.Lock()
		q := c.queues[pool]
		queued := 0
		if q != nil {
			queued = len(q.units)
		}
		c.mu.Unlock()
		if queued == n-1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	held.Release()
	wg.Wait()
	for i := range n {
		if errs[i] != nil || !slices.Equal(results[i], []string{tenants[i%2]}) {
			t.Errorf("unit %d: %v, %v; want [%s]", i, results[i], errs[i], tenants[i%2])
		}
	}
	// The held connection's release check is one write, the two round trips
	// two more.
	if got := writes.Load() - before; got > 3 {
		t.Errorf("%d units took %d writes to the server, want at most 3 (two round trips and the held connection's release check)", n, got)
	}
	if path, _ := sessionSearchPath(t, pool); !isEmptyPath(path) {
		t.Errorf("fresh acquire has search_path %q", path)
	}
}

// A unit that waits for a lock holds up the others of its round trip only
// for LockWait: it then runs again on its own, with its whole deadline,
// and succeeds once the lock is gone, while the other tenant's units have
// finished meanwhile.
func TestCoalescerLockWaitRunsAlone(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	for _, s := range []string{"tenant_acme", "tenant_globex"} {
		migrateTenant(t, b.pool, s)
	}
	locker, err := pgx.Connect(context.Background(), b.url)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(context.Background())
	tx, err := locker.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), "LOCK TABLE tenant_acme.customers IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	c := NewCoalescer(CoalescerOptions{MaxInFlight: 1, LockWait: 20 * time.Millisecond})
	unit := func(schemaName string) ([]string, error) {
		var names []string
		batch := &pgx.Batch{}
		readNames(batch, &names)
		ctx, cancel := context.WithTimeout(tenantCtx(context.Background(), schemaName), 30*time.Second)
		defer cancel()
		return names, c.InTenantBatch(ctx, b.pool, batch)
	}
	type result struct {
		names []string
		err   error
	}
	locked := make(chan result, 1)
	go func() {
		names, err := unit("tenant_acme")
		locked <- result{names, err}
	}()
	for i := range 20 {
		if names, err := unit("tenant_globex"); err != nil || !slices.Equal(names, []string{"tenant_globex"}) {
			t.Fatalf("unit %d of the other tenant while the lock is held: %v, %v", i, names, err)
		}
	}
	select {
	case r := <-locked:
		t.Fatalf("the locked tenant's unit ended while its table was locked: %v, %v", r.names, r.err)
	default:
	}
	if err := tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := <-locked; r.err != nil || !slices.Equal(r.names, []string{"tenant_acme"}) {
		t.Errorf("locked tenant's unit after the lock: %v, %v", r.names, r.err)
	}
}

// What the filter keeps out, and what the pin and the transaction check
// catch when a unit gets past it: units put into one round trip directly.
func TestCoalescerGuardsTheUnitsAfterAnUncleanOne(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	for _, s := range []string{"tenant_acme", "tenant_globex"} {
		migrateTenant(t, b.pool, s)
	}
	c := NewCoalescer(CoalescerOptions{})
	newUnit := func(schemaName, sql string, fn func(pgx.BatchResults) error) *coalescedUnit {
		ctx := tenantCtx(context.Background(), schemaName)
		tn, _ := tenantctx.FromContext(ctx)
		q := &pgx.QueuedQuery{SQL: sql, Fn: fn}
		return &coalescedUnit{ctx: ctx, tenant: tn, quoted: pgx.Identifier{schemaName}.Sanitize(), q: q, done: make(chan struct{})}
	}
	count := func(schemaName string) int {
		var n int
		if err := b.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+schemaName+".customers").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	insert := "INSERT INTO customers (name, email) VALUES ('late', 'late@example.com')"
	for _, tc := range []struct {
		name, first, wantErr string
	}{
		{"session search_path", "SELECT pg_catalog.set_config('search_path', 'tenant_acme', false)", "left this session unclean"},
		{"open transaction", "BEGIN", "left a transaction open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !mayTouchSession(tc.first) {
				t.Errorf("mayTouchSession(%q) = false: it would be coalesced", tc.first)
			}
			pidBefore := backendPID(t, b.pool)
			first := newUnit("tenant_acme", tc.first, nil)
			second := newUnit("tenant_globex", insert, nil)
			if later := c.roundTrip(b.pool, []*coalescedUnit{first, second}); len(later) != 0 {
				t.Fatalf("%d units left for later", len(later))
			}
			<-second.done
			if second.err == nil || !strings.Contains(second.err.Error(), tc.wantErr) {
				t.Errorf("second unit: %v, want an error saying %q", second.err, tc.wantErr)
			}
			if n := count("tenant_globex"); n != 1 {
				t.Errorf("tenant_globex has %d customers, want 1: the second unit must not commit", n)
			}
			if pid := backendPID(t, b.pool); pid == pidBefore {
				t.Errorf("the connection (pid %d) was kept after an unclean round trip", pid)
			}
			if path, _ := sessionSearchPath(t, b.pool); !isEmptyPath(path) {
				t.Errorf("fresh acquire has search_path %q", path)
			}
		})
	}
}

// backendPID is the backend of the pool's (only idle) connection.
func backendPID(t *testing.T, pool *pgxpool.Pool) uint32 {
	t.Helper()
	_, pid := sessionSearchPath(t, pool)
	return pid
}

func TestMayTouchSession(t *testing.T) {
	for sql, want := range map[string]bool{
		"SELECT EXISTS (SELECT FROM invoices WHERE id = $1)": false,
		"SELECT id FROM invoices WHERE id = ANY($1)":         false,
		"SELECT 1":            false,
		"set search_path = x": true,
		"  SET ROLE x":        true,
		"SELECT pg_catalog.set_config('search_path', 'x', false)": true,
		"CREATE TEMP TABLE t (x int)":                             true,
		"PREPARE p AS SELECT 1":                                   true,
		"SELECT pg_advisory_lock(1)":                              true,
		"LISTEN c":                                                true,
		"DECLARE c CURSOR WITH HOLD FOR SELECT 1":                 true,
		"BEGIN":                       true,
		"COMMIT":                      true,
		"SET SESSION AUTHORIZATION x": true,
		"DISCARD ALL":                 true,
		"RESET search_path":           true,
	} {
		if got := mayTouchSession(sql); got != want {
			t.Errorf("mayTouchSession(%q) = %v, want %v", sql, got, want)
		}
	}
}

// A caller whose ctx ends stops waiting at once, and its callback never
// runs after it returned.
func TestCoalescerCallerGivesUp(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	migrateTenant(t, b.pool, "tenant_acme")
	c := NewCoalescer(CoalescerOptions{MaxInFlight: 1})
	ctx := tenantCtx(context.Background(), "tenant_acme")
	// A slow unit in flight, so the next one waits in the queue.
	slow := make(chan error, 1)
	go func() {
		batch := &pgx.Batch{}
		batch.Queue("SELECT pg_sleep(0.5)")
		slow <- c.InTenantBatch(ctx, b.pool, batch)
	}()
	for {
		c.mu.Lock()
		q := c.queues[b.pool]
		inFlight := q != nil && q.active == 1
		c.mu.Unlock()
		if inFlight {
			break
		}
		time.Sleep(time.Millisecond)
	}
	var ran atomic.Bool
	returned := atomic.Bool{}
	giveUp, cancel := context.WithCancel(ctx)
	batch := &pgx.Batch{}
	batch.Queue("SELECT 1").Exec(func(pgconn.CommandTag) error {
		if returned.Load() {
			ran.Store(true)
		}
		return nil
	})
	errc := make(chan error, 1)
	go func() { errc <- c.InTenantBatch(giveUp, b.pool, batch) }()
	for {
		c.mu.Lock()
		queued := len(c.queues[b.pool].units)
		c.mu.Unlock()
		if queued == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	err := <-errc
	returned.Store(true)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("unit whose caller gave up: %v, want context.Canceled", err)
	}
	if err := <-slow; err != nil {
		t.Errorf("slow unit: %v", err)
	}
	// The queue drains: one more unit goes through, and the abandoned
	// unit's callback never ran after its caller returned.
	var one int
	last := &pgx.Batch{}
	last.Queue("SELECT 1").QueryRow(func(row pgx.Row) error { return row.Scan(&one) })
	if err := c.InTenantBatch(ctx, b.pool, last); err != nil || one != 1 {
		t.Errorf("unit after: %d, %v", one, err)
	}
	if ran.Load() {
		t.Error("the abandoned unit's callback ran after its caller returned")
	}
}

// Without a tenant nothing is sent; batches that are not one statement,
// and pools in PgBouncer's exec mode, go through InTenantBatch and work.
func TestCoalescerFallsBack(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	c := NewCoalescer(CoalescerOptions{})
	batch := &pgx.Batch{}
	batch.Queue("SELECT 1")
	if err := c.InTenantBatch(context.Background(), b.pool, batch); !errors.Is(err, ErrNoTenant) {
		t.Errorf("no tenant: %v, want ErrNoTenant", err)
	}
	if n := b.count.total(); n != 0 {
		t.Errorf("%d queries/acquires sent without a tenant, want 0", n)
	}
	migrateTenant(t, b.pool, "tenant_acme")
	ctx := tenantCtx(context.Background(), "tenant_acme")
	sep := "?"
	if strings.Contains(b.url, "?") {
		sep = "&"
	}
	execPool, _ := newTestPool(t, b.url+sep+"default_query_exec_mode=exec", 1, nil)
	for name, pool := range map[string]*pgxpool.Pool{"cache_statement": b.pool, "exec": execPool} {
		var names, names2 []string
		two := &pgx.Batch{}
		readNames(two, &names)
		readNames(two, &names2)
		if err := c.InTenantBatch(ctx, pool, two); err != nil || !slices.Equal(names, []string{"tenant_acme"}) || !slices.Equal(names2, names) {
			t.Errorf("%s: two statements: %v %v, %v", name, names, names2, err)
		}
		one := &pgx.Batch{}
		readNames(one, &names)
		if err := c.InTenantBatch(ctx, pool, one); err != nil || !slices.Equal(names, []string{"tenant_acme"}) {
			t.Errorf("%s: one statement: %v, %v", name, names, err)
		}
	}
}
