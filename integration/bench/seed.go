package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
	"golang.org/x/sync/errgroup"

	"github.com/invoicing/tenantworker/invoice"
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
// tenant's schema (one transaction per tenant, through the fixture builder
// invoice.Create) and records their ids.
func seedInvoices(ctx context.Context, pool *pgxpool.Pool, tenants []benchTenant, s invoiceSeed) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(seedParallelism)
	for i := range tenants {
		g.Go(func() error {
			t := &tenants[i]
			return schema.InTenant(tenantctx.WithTenant(gctx, t.Tenant), pool, func(ctx context.Context, tx pgx.Tx) error {
				customer, err := invoice.CreateCustomer(ctx, tx, invoice.Customer{Name: seedCustomerName, Company: seedCustomerCompany,
					Email: fmt.Sprintf("ap+%s@kowalska.example", t.Slug), Address: seedCustomerAddress})
				if err != nil {
					return fmt.Errorf("seed customer of %s: %w", t.Slug, err)
				}
				now := time.Now()
				invs := make([]invoice.New, s.count)
				for n := range invs {
					invs[n] = invoice.New{
						Number: fmt.Sprintf("INV-%06d", n+1), Customer: invoice.Customer{ID: customer},
						Status: s.status, Currency: "EUR", IssuedAt: now.AddDate(0, 0, -40), DueAt: now.AddDate(0, 0, s.dueDays),
						Notes: seedNotes, Lines: benchLines(s.lines),
					}
				}
				ids, err := invoice.Create(ctx, tx, invs...)
				if err != nil {
					return fmt.Errorf("seed invoices of %s: %w", t.Slug, err)
				}
				t.Invoices = append(t.Invoices, ids...)
				return nil
			})
		})
	}
	return g.Wait()
}

// benchLines are the line items of every seeded invoice.
func benchLines(n int) []invoice.Line {
	lines := make([]invoice.Line, n)
	for p := 1; p <= n; p++ {
		lines[p-1] = invoice.Line{
			Description: fmt.Sprintf("Consulting, work package %d: implementation and review", p),
			Quantity:    decimal.New(int64(p)*5, -1),
			UnitPrice:   decimal.New(10000+int64(p)*725, -2),
		}
	}
	return lines
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
	for _, l := range benchLines(lines) {
		inv.Lines = append(inv.Lines, pdf.Line{Description: l.Description, Quantity: l.Quantity, UnitPrice: l.UnitPrice})
	}
	return inv
}
