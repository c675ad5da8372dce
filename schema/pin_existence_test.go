package schema

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestLateUnitPinnedByNameReachesNewOwner: a unit of a tenant is
// pinned while its schema exists and is its own. Before the unit's first
// statement touches a table, the tenant is destroyed (DropOwned, as the
// lifecycle does) and the slug's next tenant gets a schema of the same name
// (MigrateWith with a new owner). The late unit's statements must not reach
// the new owner's schema (P17): either the destroy waits for the unit, or
// the unit finds no table.
func TestLateUnitPinnedByNameReachesNewOwner(t *testing.T) {
	t.Parallel()
	b := setup(t, 4)
	ctx := context.Background()
	const late, next = "tn_latexxxxxxxxxxxxxxxxxxxxxx", "tn_nextxxxxxxxxxxxxxxxxxxxxx"
	as := func(id string) context.Context {
		return tenantctx.WithTenant(ctx, tenantctx.Tenant{ID: id, Slug: "reused", Schema: "tenant_reused", Status: tenantctx.StatusActive})
	}
	setupOld := func() {
		t.Helper()
		if err := Drop(ctx, b.pool, "tenant_reused"); err != nil {
			t.Fatal(err)
		}
		if _, err := MigrateWith(ctx, b.pool, "tenant_reused", MigrateOptions{Create: &Creation{Owner: late}}); err != nil {
			t.Fatal(err)
		}
	}
	// reuse destroys the late tenant's schema and gives the slug to the next
	// tenant, with one customer; it runs beside the late unit and returns
	// once done, or once it waits for a lock (then it finishes later).
	reuse := func() chan error {
		done := make(chan error, 1)
		go func() {
			done <- func() error {
				if dropped, err := DropOwned(ctx, b.pool, "tenant_reused", late); err != nil || !dropped {
					return fmt.Errorf("DropOwned: %v %v", dropped, err)
				}
				if _, err := MigrateWith(ctx, b.pool, "tenant_reused", MigrateOptions{Create: &Creation{Owner: next}}); err != nil {
					return err
				}
				_, err := b.pool.Exec(ctx, "INSERT INTO tenant_reused.customers (name, email) VALUES ('next owner', 'next@example.com')")
				return err
			}()
		}()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case err := <-done:
				done <- err
				return done
			default:
			}
			// A session of this test's database: the server is shared.
			if waiting, _ := testenv.LockWaiters(ctx, b.pool, ""); waiting > 0 {
				return done
			}
			time.Sleep(5 * time.Millisecond)
		}
		return done
	}
	// nextOwnerRows reads what the next owner's customers table holds.
	nextOwnerRows := func() []string {
		t.Helper()
		rows, err := b.pool.Query(ctx, "SELECT name FROM tenant_reused.customers ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return names
	}

	setupOld()
	var names []string
	var reused chan error
	err := InTenant(as(late), b.pool, func(ctx context.Context, tx pgx.Tx) error {
		reused = reuse()
		var err error
		names, err = customerNames(ctx, tx)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "INSERT INTO customers (name, email) VALUES ('written by the deleted tenant', 'late@example.com')")
		return err
	})
	if rerr := <-reused; rerr != nil {
		t.Fatal(rerr)
	}
	if slices.Contains(names, "next owner") || slices.Contains(nextOwnerRows(), "written by the deleted tenant") {
		t.Errorf("InTenant: the deleted tenant's late unit read %q of the next owner's customers and wrote %q into its table (err %v)",
			names, nextOwnerRows(), err)
	}

	setupOld()
	names = nil
	err = InTenantBatches(as(late), b.pool, nil, func(ctx context.Context) (*pgx.Batch, error) {
		reused = reuse()
		var last pgx.Batch
		last.Queue("SELECT name FROM customers").Query(func(rows pgx.Rows) error {
			var err error
			names, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		return &last, nil
	})
	if rerr := <-reused; rerr != nil {
		t.Fatal(rerr)
	}
	if slices.Contains(names, "next owner") {
		t.Errorf("InTenantBatches: the deleted tenant's late unit read %q of the next owner's customers (err %v)", names, err)
	}
}
