package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
	"golang.org/x/sync/errgroup"

	"github.com/invoicing/tenantworker/pdf"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// seedParallelism bounds concurrent seeding transactions.
const seedParallelism = 8

// benchTenant is a seeded tenant and, when asked for, its API key.
type benchTenant struct {
	tenantctx.Tenant
	APIKey   string
	Invoices []int64
}

// slugFor names tenant i of a group: "core-0042".
func slugFor(prefix string, i int) string { return fmt.Sprintf("%s-%04d", prefix, i) }

// seedActiveTenants creates n tenants directly (catalog row, schema
// migrated with schema.Migrate, status active), not through tasks: it is
// set-up, not a measurement. With keys it also creates an API key each.
func seedActiveTenants(ctx context.Context, pool *pgxpool.Pool, catalog storage.Catalog, prefix string, n int, keys bool) ([]benchTenant, error) {
	out := make([]benchTenant, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(seedParallelism)
	for i := range n {
		g.Go(func() error {
			t, err := tenantctx.New(slugFor(prefix, i), fmt.Sprintf("Bench Tenant %d GmbH", i), "pro")
			if err != nil {
				return err
			}
			if t, err = catalog.CreateTenant(gctx, t); err != nil {
				return fmt.Errorf("seed tenant %s: %w", t.Slug, err)
			}
			if _, err := schema.Migrate(gctx, pool, t.Schema, 0); err != nil {
				return fmt.Errorf("seed tenant %s: %w", t.Slug, err)
			}
			if t, err = catalog.SetStatus(gctx, t.ID, tenantctx.StatusActive); err != nil {
				return fmt.Errorf("seed tenant %s: activate: %w", t.Slug, err)
			}
			bt := benchTenant{Tenant: t}
			if keys {
				if bt.APIKey, err = catalog.CreateAPIKey(gctx, t.ID); err != nil {
					return fmt.Errorf("seed tenant %s: api key: %w", t.Slug, err)
				}
			}
			out[i] = bt
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// invoiceSeed says what invoices each tenant gets.
type invoiceSeed struct {
	count   int    // invoices per tenant
	lines   int    // line items per invoice
	status  string // e.g. "sent"
	dueDays int    // due date relative to now; negative is past due
}

// Seeded customer and line data; benchInvoice renders the same document.
const (
	seedCustomerName    = "Zoë Kowalska"
	seedCustomerCompany = "Kowalska & Córki sp. z o.o."
	seedCustomerAddress = "ul. Piotrkowska 104\n90-001 Łódź\nPoland"
	seedNotes           = "Payable within 30 days. Thank you for your business."
)

// seedInvoices inserts s.count invoices with s.lines lines each into every
// tenant's schema (one transaction per tenant) and records their ids.
func seedInvoices(ctx context.Context, pool *pgxpool.Pool, tenants []benchTenant, s invoiceSeed) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(seedParallelism)
	for i := range tenants {
		g.Go(func() error {
			t := &tenants[i]
			return schema.InTenant(tenantctx.WithTenant(gctx, t.Tenant), pool, func(ctx context.Context, tx pgx.Tx) error {
				var customer int64
				err := tx.QueryRow(ctx,
					"INSERT INTO customers (name, company, email, address) VALUES ($1, $2, $3, $4) RETURNING id",
					seedCustomerName, seedCustomerCompany, fmt.Sprintf("ap+%s@kowalska.example", t.Slug), seedCustomerAddress).Scan(&customer)
				if err != nil {
					return fmt.Errorf("seed customer of %s: %w", t.Slug, err)
				}
				rows, err := tx.Query(ctx, `
INSERT INTO invoices (number, customer_id, status, currency, issued_at, due_date, notes)
SELECT 'INV-' || lpad(g::text, 6, '0'), $1, $2, 'EUR', now() - interval '40 days', now() + make_interval(days => $3), $4
  FROM generate_series(1, $5::int) g
RETURNING id`, customer, s.status, s.dueDays, seedNotes, s.count)
				if err != nil {
					return fmt.Errorf("seed invoices of %s: %w", t.Slug, err)
				}
				ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
				if err != nil {
					return fmt.Errorf("seed invoices of %s: %w", t.Slug, err)
				}
				t.Invoices = append(t.Invoices, ids...)
				if s.lines > 0 {
					_, err = tx.Exec(ctx, `
INSERT INTO line_items (invoice_id, position, description, quantity, unit_price)
SELECT i.id, p, 'Consulting, work package ' || p || ': implementation and review', p * 0.5, 100 + p * 7.25
  FROM unnest($1::bigint[]) AS i(id) CROSS JOIN generate_series(1, $2::int) p`, ids, s.lines)
					if err != nil {
						return fmt.Errorf("seed lines of %s: %w", t.Slug, err)
					}
				}
				return nil
			})
		})
	}
	return g.Wait()
}

// benchInvoice is the document seedInvoices' invoices render to, for the
// in-process render baseline.
func benchInvoice(lines int) pdf.Invoice {
	now := time.Now()
	inv := pdf.Invoice{
		TenantName: "Bench Tenant 1 GmbH",
		Number:     "INV-000001",
		IssuedAt:   now.AddDate(0, 0, -40),
		DueAt:      now.AddDate(0, 0, 10),
		Status:     "sent",
		Currency:   "EUR",
		Customer: pdf.Customer{Name: seedCustomerName, Company: seedCustomerCompany,
			Email: "ap+core-0001@kowalska.example", Address: seedCustomerAddress},
		Notes: seedNotes,
	}
	for p := 1; p <= lines; p++ {
		inv.Lines = append(inv.Lines, pdf.Line{
			Description: fmt.Sprintf("Consulting, work package %d: implementation and review", p),
			Quantity:    decimal.New(int64(p)*5, -1),
			UnitPrice:   decimal.New(10000+int64(p)*725, -2),
		})
	}
	return inv
}
