package schema

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// P1 + P3: one connection, two tenants with identical tables, 1,000
// interleaved units of work in random order, many of them ending badly.
// Every successful read sees only its own tenant's row, and after every
// unit a fresh acquire shows an empty search_path.
func TestInTenantIsolationOnOneConnection(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	tenants := []string{"tenant_acme", "tenant_globex"}
	for _, s := range tenants {
		migrateTenant(t, b.pool, s)
	}

	type kind int
	const (
		read kind = iota
		panics
		timeout
		divZero
		syntax
		rollback // inserts a row, then fn returns an error
		sessionSet
		numKinds
	)
	const units = 1000
	work := make([]kind, units)
	for i := range work {
		if i%2 == 0 {
			work[i] = read
		} else {
			work[i] = kind(1 + i/2%int(numKinds-1))
		}
	}
	rand.Shuffle(len(work), func(i, j int) { work[i], work[j] = work[j], work[i] })

	errFn := errors.New("unit failed on purpose")
	var (
		mu     sync.Mutex
		failed []string
		seen   = map[kind]int{}
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failed) < 20 {
			failed = append(failed, fmt.Sprintf(format, args...))
		}
	}
	runUnit := func(i int, k kind, schemaName, other string) {
		ctx := tenantCtx(context.Background(), schemaName)
		var cancel context.CancelFunc = func() {}
		if k == timeout {
			ctx, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
		}
		defer cancel()
		var names []string
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
			err = InTenant(ctx, b.pool, func(ctx context.Context, tx pgx.Tx) error {
				switch k {
				case read:
					var err error
					names, err = customerNames(ctx, tx)
					return err
				case panics:
					if _, err := tx.Exec(ctx, "INSERT INTO customers (name, email) VALUES ('intruder', 'x@x')"); err != nil {
						return err
					}
					panic("unit panics")
				case timeout:
					_, err := tx.Exec(ctx, "SELECT pg_sleep(5)")
					return err
				case divZero:
					_, err := tx.Exec(ctx, "SELECT 1/0")
					return err
				case syntax:
					_, err := tx.Exec(ctx, "SELEC name FROM customers")
					return err
				case rollback:
					if _, err := tx.Exec(ctx, "INSERT INTO customers (name, email) VALUES ('intruder', 'x@x')"); err != nil {
						return err
					}
					return errFn
				case sessionSet:
					// Hostile fn: tries to leave the other tenant pinned.
					_, err := tx.Exec(ctx, "SELECT pg_catalog.set_config('search_path', $1, false)", other)
					return err
				}
				return nil
			})
		}()
		mu.Lock()
		seen[k]++
		mu.Unlock()
		switch k {
		case read:
			if err != nil || !slices.Equal(names, []string{schemaName}) {
				fail("unit %d: read in %s saw %v (err %v), want only [%s]", i, schemaName, names, err, schemaName)
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
		if path, _ := sessionSearchPath(t, b.pool); !isEmptyPath(path) {
			fail("unit %d (kind %d): fresh acquire has search_path %q", i, k, path)
		}
	}

	next := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range next {
				s := tenants[rand.IntN(2)]
				other := tenants[0]
				if s == other {
					other = tenants[1]
				}
				runUnit(i, work[i], s, other)
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
	for k := range numKinds {
		if seen[k] == 0 {
			t.Errorf("kind %d never ran", k)
		}
	}
	t.Logf("units per kind (read, panic, timeout, div0, syntax, rollback, session set): %v", seen)
	// Nothing from the failed units was committed anywhere.
	var n int
	if err := b.pool.QueryRow(context.Background(),
		"SELECT (SELECT count(*) FROM tenant_acme.customers) + (SELECT count(*) FROM tenant_globex.customers)").Scan(&n); err != nil || n != 2 {
		t.Errorf("customers in both tenants: %d (err %v), want 2", n, err)
	}
}

// A dropped tenant fails closed: its queries find no relation, and nothing
// else is read in its place.
func TestDropThenInTenantFailsClosed(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	migrateTenant(t, b.pool, "tenant_acme")
	migrateTenant(t, b.pool, "tenant_globex")
	// Tables of the same name where a lax search_path would find them.
	if _, err := b.pool.Exec(context.Background(), "CREATE TABLE public.customers (name text); INSERT INTO public.customers VALUES ('public row')"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := Drop(ctx, b.pool, "tenant_acme"); err != nil {
		t.Fatal(err)
	}
	if err := Drop(ctx, b.pool, "tenant_acme"); err != nil {
		t.Errorf("second Drop: %v", err)
	}
	if ok, err := Exists(ctx, b.pool, "tenant_acme"); ok || err != nil {
		t.Errorf("Exists after Drop = %v, %v", ok, err)
	}
	if v, err := Version(ctx, b.pool, "tenant_acme"); v != 0 || err != nil {
		t.Errorf("Version after Drop = %d, %v", v, err)
	}
	var names []string
	err := InTenant(tenantCtx(ctx, "tenant_acme"), b.pool, func(ctx context.Context, tx pgx.Tx) error {
		var err error
		names, err = customerNames(ctx, tx)
		return err
	})
	if pgCode(err) != "42P01" || !strings.Contains(err.Error(), "does not exist") || names != nil {
		t.Errorf("InTenant on dropped schema: names %v, err %v; want relation does not exist", names, err)
	}
	err = InTenant(tenantCtx(ctx, "tenant_globex"), b.pool, func(ctx context.Context, tx pgx.Tx) error {
		names, err = customerNames(ctx, tx)
		return err
	})
	if err != nil || !slices.Equal(names, []string{"tenant_globex"}) {
		t.Errorf("other tenant after Drop: %v, %v", names, err)
	}
}
