package invoice_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/procstat"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/pdf"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tenantctx"
)

// BenchmarkPDFUnit measures the PDF handler's unit of work without the
// render: the tenant's shared lock, generic plans and the load in the
// first round trip, the record with COMMIT and the check in the second
// (schema.InTenantBatches), over 10 tenants of 200 ten-line invoices taken
// in turn, so that every unit changes search_path as in the worker. It
// reports pg-us/op, the CPU the server's backends spent per unit (from
// /proc, when PostgreSQL runs on this machine), beside the time per unit:
//
//   - load: the first round trip alone (an unchanged invoice's unit);
//   - insert, update: the whole unit, recording a first document or
//     replacing one;
//   - serial runs one unit at a time on one connection; parallel2 and
//     parallel8 run 2 and 8 goroutines on as many connections, as a busy
//     worker does, and show what the server pays per unit when its
//     backends and the client share the machine's CPUs.
func BenchmarkPDFUnit(b *testing.B) {
	ctx := context.Background()
	url := testenv.Postgres(b)
	setupPool, err := schema.NewPool(ctx, url, schema.PoolOptions{MaxConns: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer setupPool.Close()
	const perTenant = 200
	var tenants []tenantctx.Tenant
	for i := range 10 {
		tn, err := tenantctx.New(fmt.Sprintf("bench%d", i), "Bench", "pro")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := schema.Migrate(ctx, setupPool, tn.Schema, 0); err != nil {
			b.Fatal(err)
		}
		err = schema.InTenant(tenantctx.WithTenant(ctx, tn), setupPool, func(ctx context.Context, tx pgx.Tx) error {
			for j := range perTenant {
				lines := make([]invoice.Line, 10)
				for k := range lines {
					lines[k] = invoice.Line{Description: fmt.Sprintf("Line %d", k), Quantity: dec("2"), UnitPrice: dec("12.50")}
				}
				_, err := invoice.Create(ctx, tx, invoice.New{Number: fmt.Sprintf("B-%d", j),
					Customer: invoice.Customer{Name: "Customer", Email: fmt.Sprintf("c%d@example.com", j)}, Lines: lines})
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		tenants = append(tenants, tn)
	}
	if _, err := setupPool.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		b.Fatal(err)
	}
	forget := func(b *testing.B) {
		for _, tn := range tenants {
			if _, err := setupPool.Exec(ctx, "DELETE FROM "+pgx.Identifier{tn.Schema, "invoice_documents"}.Sanitize()); err != nil {
				b.Fatal(err)
			}
		}
	}

	var seq atomic.Int64
	unit := func(pool *pgxpool.Pool, record bool) error {
		i := seq.Add(1)
		tn := tenants[i%int64(len(tenants))]
		id := (i/int64(len(tenants)))%perTenant + 1
		ctx := tenantctx.WithTenant(ctx, tn)
		first := &pgx.Batch{}
		if err := schema.QueueLockShared(ctx, first); err != nil {
			return err
		}
		schema.QueueGenericPlans(first)
		var inv invoice.Invoice
		// As the worker loads it: its lines counted against the default
		// line limit.
		if err := invoice.QueueLoadForAtMost(first, tn.Schema, id, pdf.DefaultMaxLines, pdf.DefaultMaxLineBytes, &inv); err != nil {
			return err
		}
		var next func(context.Context) (*pgx.Batch, error)
		if record {
			next = func(context.Context) (*pgx.Batch, error) {
				last := &pgx.Batch{}
				return last, invoice.QueueRecordDocumentFor(last, tn.Schema, invoice.Document{InvoiceID: id,
					StorageKey: invoice.DocumentKey(id), SHA256: strconv.FormatInt(i, 16), Bytes: 30000, FontPath: "cp1252"})
			}
		}
		return schema.InTenantBatches(ctx, pool, first, next)
	}

	for _, mode := range []struct {
		name  string
		conns int
	}{{"serial", 1}, {"parallel2", 2}, {"parallel8", 8}} {
		for _, kind := range []string{"load", "insert", "update"} {
			b.Run(mode.name+"/"+kind, func(b *testing.B) {
				pool, err := schema.NewPool(ctx, url, schema.PoolOptions{MaxConns: int32(mode.conns)})
				if err != nil {
					b.Fatal(err)
				}
				defer pool.Close()
				pids := backendPIDs(b, pool, mode.conns)
				switch kind {
				case "insert":
					forget(b)
				case "update":
					for range len(tenants) * perTenant { // every invoice has its document
						if err := unit(pool, true); err != nil {
							b.Fatal(err)
						}
					}
				}
				record := kind != "load"
				for range 20 * len(tenants) { // every connection prepares and plans
					if err := unit(pool, record); err != nil {
						b.Fatal(err)
					}
				}
				cpu0, err0 := procstat.CPU(pids) // fails when PostgreSQL runs on another machine
				if mode.conns == 1 {
					for b.Loop() {
						if err := unit(pool, record); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					var wg sync.WaitGroup
					var left atomic.Int64
					left.Store(int64(b.N))
					b.ResetTimer()
					for range mode.conns {
						wg.Go(func() {
							for left.Add(-1) >= 0 {
								if err := unit(pool, record); err != nil {
									b.Error(err)
									return
								}
							}
						})
					}
					wg.Wait()
				}
				b.StopTimer()
				if cpu1, err1 := procstat.CPU(pids); err0 == nil && err1 == nil {
					b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "pg-us/op")
				}
			})
		}
	}
}

// backendPIDs holds n connections of pool at once and returns their
// backends' process ids.
func backendPIDs(b *testing.B, pool *pgxpool.Pool, n int) []int {
	ctx := context.Background()
	var pids []int
	var conns []*pgxpool.Conn
	for range n {
		c, err := pool.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		var pid int
		if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			b.Fatal(err)
		}
		pids = append(pids, pid)
	}
	for _, c := range conns {
		c.Release()
	}
	return pids
}
