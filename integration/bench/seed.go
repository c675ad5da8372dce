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
	APIKey string
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

// prepareDocuments makes the document directories of the tenants ids in
// the document store at dir, as provisioning (tenant:migrate) makes them
// for a new tenant: seeded tenants skip it.
func prepareDocuments(ctx context.Context, dir string, ids ...string) error {
	docs, err := storage.NewFS(dir)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := docs.PrepareTenant(ctx, id, invoice.DocumentDir); err != nil {
			return err
		}
	}
	return nil
}

// invoiceSeed says what invoices each tenant gets.
type invoiceSeed struct {
	count   int    // invoices per tenant
	lines   int    // line items per invoice
	status  string // e.g. "sent"
	dueDays int    // due date relative to now; negative is past due
	text    seedText
	// prefix sets invoices (numbers) and customers (e-mail addresses)
	// apart from those of another seeding of the same text in the same
	// tenants: both are unique per tenant.
	prefix string
}

// seedText is the text of seeded invoices: it decides the renderer's font
// path.
type seedText struct {
	kind     string // names the kind in reports
	name     string
	company  string
	address  string
	notes    string
	lineText string // a fmt format with one %d, the line's number
}

// The seeded invoices' text. singleByte is Polish and German text that
// Windows-1250 holds (pdf.FontPathCP1250, a single-byte code page: the
// same cost as cp1252); anyScript mixes Greek, Cyrillic and Polish, which
// no single-byte code page holds (pdf.FontPathUTF8).
var (
	singleByte = seedText{
		kind:     "single-byte",
		name:     "Zoë Kowalska",
		company:  "Kowalska & Córki sp. z o.o.",
		address:  "ul. Piotrkowska 104\n90-001 Łódź\nPoland",
		notes:    "Payable within 30 days. Thank you for your business.",
		lineText: "Consulting, work package %d: implementation and review",
	}
	anyScript = seedText{
		kind:     "any-script",
		name:     "Ζωή Παπαδοπούλου / Зоя Ковальская",
		company:  "Ωmega Ελλάς Α.Ε. и ООО «Ромашка», Łódź",
		address:  "Λεωφόρος Κηφισίας 12\nΑθήνα 115 26\nул. Тверская 7, Москва",
		notes:    "Πληρωτέο εντός 30 ημερών. Оплата в течение 30 дней. Dziękujemy.",
		lineText: "Консультации, пакет %d: υλοποίηση και έλεγχος (wdrożenie)",
	}
)

// seedInvoices inserts s.count invoices with s.lines lines each into every
// tenant's schema (one transaction per tenant, through the fixture builder
// invoice.Create) and returns their ids per tenant.
func seedInvoices(ctx context.Context, pool *pgxpool.Pool, tenants []benchTenant, s invoiceSeed) ([][]int64, error) {
	out := make([][]int64, len(tenants))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(seedParallelism)
	for i := range tenants {
		g.Go(func() error {
			t := &tenants[i]
			return schema.InTenant(tenantctx.WithTenant(gctx, t.Tenant), pool, func(ctx context.Context, tx pgx.Tx) error {
				customer, err := invoice.CreateCustomer(ctx, tx, invoice.Customer{Name: s.text.name, Company: s.text.company,
					Email: fmt.Sprintf("ap+%s%s-%s@kowalska.example", s.prefix, s.text.kind, t.Slug), Address: s.text.address})
				if err != nil {
					return fmt.Errorf("seed customer of %s: %w", t.Slug, err)
				}
				now := time.Now()
				invs := make([]invoice.New, s.count)
				for n := range invs {
					invs[n] = invoice.New{
						Number: fmt.Sprintf("INV-%s%s-%06d", s.prefix, s.text.kind, n+1), Customer: invoice.Customer{ID: customer},
						Status: s.status, Currency: "EUR", IssuedAt: now.AddDate(0, 0, -40), DueAt: now.AddDate(0, 0, s.dueDays),
						Notes: s.text.notes, Lines: benchLines(s.text, s.lines),
					}
				}
				ids, err := invoice.Create(ctx, tx, invs...)
				if err != nil {
					return fmt.Errorf("seed invoices of %s: %w", t.Slug, err)
				}
				out[i] = ids
				return nil
			})
		})
	}
	return out, g.Wait()
}

// benchLines are the line items of every seeded invoice of a kind.
func benchLines(text seedText, n int) []invoice.Line {
	lines := make([]invoice.Line, n)
	for p := 1; p <= n; p++ {
		lines[p-1] = invoice.Line{
			Description: fmt.Sprintf(text.lineText, p),
			Quantity:    decimal.New(int64(p)*5, -1),
			UnitPrice:   decimal.New(10000+int64(p)*725, -2),
		}
	}
	return lines
}

// benchInvoice is the document seedInvoices' invoices of a kind render
// to, for the in-process render baseline.
func benchInvoice(text seedText, lines int) pdf.Invoice {
	now := time.Now()
	inv := pdf.Invoice{
		TenantName: "Bench Tenant 1 GmbH",
		Number:     "INV-" + text.kind + "-000001",
		IssuedAt:   now.AddDate(0, 0, -40),
		DueAt:      now.AddDate(0, 0, 10),
		Status:     "sent",
		Currency:   "EUR",
		Customer: pdf.Customer{Name: text.name, Company: text.company,
			Email: "ap+" + text.kind + "-core-0001@kowalska.example", Address: text.address},
		Notes: text.notes,
	}
	for _, l := range benchLines(text, lines) {
		inv.Lines = append(inv.Lines, pdf.Line{Description: l.Description, Quantity: l.Quantity, UnitPrice: l.UnitPrice})
	}
	return inv
}
