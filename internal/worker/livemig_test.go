package worker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestMigrationUnderRenderLoad migrates a tenant from version 3 to the
// latest while its PDFs render on every connection of the pool (each
// connection holding the tenant's prepared statements): every render
// succeeds, before, during and after the migration, and the migration
// applies every step.
func TestMigrationUnderRenderLoad(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	tn, err := tenantctx.New("livemig", "", "pro")
	if err != nil {
		t.Fatal(err)
	}
	tn.Name = "Live Migration Ltd"
	if tn, err = e.catalog.CreateTenant(e.ctx, tn); err != nil {
		t.Fatal(err)
	}
	if _, err := schema.Migrate(e.ctx, e.pool, tn.Schema, 3); err != nil {
		t.Fatal(err)
	}
	if tn, err = e.catalog.SetStatus(e.ctx, tn.ID, tenantctx.StatusActive); err != nil {
		t.Fatal(err)
	}
	const n = 40
	var ids []int64
	for i := range n {
		// Rows as the app writes them at version 3 (invoice.Create needs
		// version 4's unique email).
		e.inTenant(t, tn, func(ctx context.Context, tx pgx.Tx) error {
			var cid, id int64
			if err := tx.QueryRow(ctx, "INSERT INTO customers (name, email) VALUES ($1, $2) RETURNING id",
				acmeCustomer.Name, fmt.Sprintf("c%d@mueller.example", i)).Scan(&cid); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, "INSERT INTO invoices (number, customer_id, status, currency, due_date, amount) VALUES ($1, $2, 'sent', 'EUR', '2026-02-04', 1331.74) RETURNING id",
				fmt.Sprintf("LM-%04d", i), cid).Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
			_, err := tx.Exec(ctx, "INSERT INTO line_items (invoice_id, position, description, quantity, unit_price) VALUES ($1, 1, 'Consulting', 12.5, 96), ($1, 2, 'Travel', 1, 131.74)", id)
			return err
		})
	}

	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	stop := make(chan struct{})
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := ids[i%n]
				// Make every render a real one: change the invoice first.
				e.inTenant(t, tn, func(ctx context.Context, tx pgx.Tx) error {
					_, err := tx.Exec(ctx, "UPDATE invoices SET notes = $2 WHERE id = $1", id, fmt.Sprintf("note %d", i))
					return err
				})
				if err := e.work(tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: id}); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("invoice %d: %w", id, err))
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	res, err := e.h.Tenancy.Migrate(e.ctx, tn, 0, tenancy.ActorWorker)
	if err != nil {
		t.Errorf("migrate under load: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("migration: %+v", res)
	for i, err := range errs {
		if i < 10 {
			t.Errorf("render failed: %v", err)
		}
	}
	if len(errs) > 0 {
		t.Errorf("%d renders failed", len(errs))
	}
}

// TestInvoicePDFBehindALongRowLock: the app holds the invoice's document
// row in a long transaction; a render of that invoice with a 2 s deadline
// ends by its deadline (no hang), the document row is left as the app's
// transaction has it, and every connection of the pool is clean after.
func TestInvoicePDFBehindALongRowLock(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	tn := e.provision(t, "rowlock", "Row Lock Ltd")
	id := e.addInvoice(t, tn, acmeCustomer, acmeInvoice)
	if err := e.work(tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: id}); err != nil {
		t.Fatal(err)
	}
	e.inTenant(t, tn, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE invoices SET notes = 'changed' WHERE id = $1", id)
		return err
	})
	holder, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(e.ctx)
	if _, err := holder.Exec(e.ctx, "SELECT 1 FROM "+tn.Schema+".invoice_documents WHERE invoice_id = $1 FOR UPDATE", id); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	err = e.w.Work(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: id})
	took := time.Since(start)
	t.Logf("render behind the lock: %v after %s", err, took)
	if err == nil {
		t.Fatal("render succeeded behind a row lock")
	}
	if took > 20*time.Second {
		t.Errorf("render behind the lock took %s; its deadline was 2 s", took)
	}
	if err := holder.Rollback(e.ctx); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		var sp string
		if err := e.pool.QueryRow(e.ctx, "SELECT current_setting('search_path')").Scan(&sp); err != nil {
			t.Fatal(err)
		}
		if sp != "" {
			t.Errorf("a pool connection has search_path %q after the timed-out render", sp)
		}
	}
	if err := e.work(tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: id}); err != nil {
		t.Errorf("render after the lock was released: %v", err)
	}
}
