package devstack

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tenantctx"
)

// demoCustomer is a customer of a demo tenant.
type demoCustomer struct {
	name, company, email, address string
}

// demoLine is an invoice line; money and quantities are decimal strings,
// never floats.
type demoLine struct {
	description, quantity, unitPrice string
}

// demoInvoice is an invoice of a demo tenant. dueInDays is relative to the
// time of seeding: negative is past due.
type demoInvoice struct {
	customer  int // index into the tenant's customers
	status    string
	currency  string
	issuedAgo int // days before seeding
	dueInDays int
	notes     string
	lines     []demoLine
}

// demoData is what one demo tenant's schema is seeded with.
type demoData struct {
	prefix    string // invoice number prefix
	customers []demoCustomer
	invoices  []demoInvoice
}

// demoTenant is one of the tenants the dev stack provisions.
type demoTenant struct {
	slug, name string
	// timeZone is the tenant's time zone (its invoices' due dates are
	// judged in it).
	timeZone string
	data     demoData
}

// demoTenants are provisioned on every start (or reused when present).
// Invoice 1 of each is sent and past due, so the banner's curl commands
// and the first sweep have something to do.
var demoTenants = []demoTenant{
	{slug: "acme", name: "ACME Corporation", timeZone: "Europe/Berlin", data: demoData{
		prefix: "ACME",
		customers: []demoCustomer{
			{name: "Jürgen Müller", company: "Müller GmbH", email: "juergen@mueller.example", address: "Königstraße 12, 70173 Stuttgart, Germany"},
			{name: "Zoë Kowalska", company: "Kowalska & Córki", email: "zoe@kowalska.example", address: "ul. Piotrkowska 104, 90-001 Łódź, Poland"},
			{name: "Ωmega Holdings", company: "Ωmega Holdings Ltd", email: "ap@omega.example", address: "1 Harbour Street, Dublin, Ireland"},
		},
		invoices: []demoInvoice{
			{customer: 0, status: "sent", currency: "EUR", issuedAgo: 45, dueInDays: -15, notes: "Zahlbar innerhalb von 30 Tagen.", lines: []demoLine{
				{"Beratung Müller GmbH: Einführung", "12.5", "120.00"},
				{"Schulung für Zoë und das Team in Łódź", "2", "850.00"},
				{"Lizenz Ωmega Suite (Jahresabo)", "1", "1499.99"},
			}},
			{customer: 1, status: "sent", currency: "EUR", issuedAgo: 40, dueInDays: -10, lines: []demoLine{
				{"Wdrożenie systemu – Łódź", "3", "1250.00"},
				{"Wsparcie techniczne (godziny)", "7.25", "95.50"},
			}},
			{customer: 2, status: "paid", currency: "USD", issuedAgo: 60, dueInDays: -30, lines: []demoLine{
				{"Ωmega API access, Q1", "1", "2400.00"},
				{"Overage: 12,500 calls", "12500", "0.02"},
			}},
			{customer: 2, status: "sent", currency: "USD", issuedAgo: 35, dueInDays: -5, lines: []demoLine{
				{"Ωmega API access, Q2", "1", "2400.00"},
			}},
			{customer: 0, status: "draft", currency: "EUR", issuedAgo: 0, dueInDays: 30, notes: "Entwurf", lines: []demoLine{
				{"Wartung Müller GmbH (März)", "1", "300.00"},
				{"Café-Workshop mit Zoë", "0.5", "640.00"},
			}},
			{customer: 1, status: "sent", currency: "EUR", issuedAgo: 5, dueInDays: 25, lines: []demoLine{
				{"Hosting Łódź-1 (miesięcznie)", "1", "89.00"},
			}},
		},
	}},
	{slug: "globex", name: "Globex Inc.", timeZone: "America/New_York", data: demoData{
		prefix: "GLX",
		customers: []demoCustomer{
			{name: "Zoë Lambert", company: "Ωmega Partners", email: "zoe@omega-partners.example", address: "12 Rue de la Paix, 75002 Paris, France"},
			{name: "Hiro Tanaka", company: "田中商事", email: "hiro@tanaka.example", address: "1-1 Marunouchi, Chiyoda, Tokyo, Japan"},
			{name: "Anna Nowak", company: "Łódź Logistics", email: "anna@lodz-logistics.example", address: "ul. Zgierska 5, Łódź, Poland"},
		},
		invoices: []demoInvoice{
			{customer: 1, status: "sent", currency: "JPY", issuedAgo: 50, dueInDays: -20, lines: []demoLine{
				{"Consulting for 田中商事 (Müller method)", "10", "15000"},
				{"Travel Tokyo–Osaka", "1", "28400"},
			}},
			{customer: 0, status: "sent", currency: "USD", issuedAgo: 33, dueInDays: -3, lines: []demoLine{
				{"Ωmega Partners retainer", "1", "5000.00"},
				{"Expenses (Zoë)", "1", "312.45"},
			}},
			{customer: 2, status: "paid", currency: "USD", issuedAgo: 70, dueInDays: -40, lines: []demoLine{
				{"Freight audit Łódź–Gdańsk", "4", "780.00"},
			}},
			{customer: 1, status: "draft", currency: "JPY", issuedAgo: 0, dueInDays: 30, lines: []demoLine{
				{"Support plan 2026", "12", "42000"},
			}},
		},
	}},
}

// seedTenant inserts the demo data into the tenant's schema once, with the
// one fixture builder (invoice.Create): a schema that already has invoices
// (a second run on the same DATABASE_URL) is left as it is. It reports
// whether it inserted anything.
func seedTenant(ctx context.Context, pool *pgxpool.Pool, t tenantctx.Tenant, data demoData, now time.Time) (bool, error) {
	seeded := false
	err := schema.InTenant(tenantctx.WithTenant(ctx, t), pool, func(ctx context.Context, tx pgx.Tx) error {
		existing, err := invoice.Page(ctx, tx, 0, 1)
		if err != nil || len(existing) > 0 {
			return err
		}
		customerIDs := make([]int64, len(data.customers))
		for i, c := range data.customers {
			customer := invoice.Customer{Name: c.name, Company: c.company, Email: c.email, Address: c.address}
			if customerIDs[i], err = invoice.CreateCustomer(ctx, tx, customer); err != nil {
				return err
			}
		}
		day := 24 * time.Hour
		invs := make([]invoice.New, len(data.invoices))
		for i, inv := range data.invoices {
			lines := make([]invoice.Line, len(inv.lines))
			for j, l := range inv.lines {
				// Decimal strings: money never passes through a float.
				q, err := decimal.NewFromString(l.quantity)
				if err != nil {
					return fmt.Errorf("demo line %q: quantity: %w", l.description, err)
				}
				p, err := decimal.NewFromString(l.unitPrice)
				if err != nil {
					return fmt.Errorf("demo line %q: unit price: %w", l.description, err)
				}
				lines[j] = invoice.Line{Description: l.description, Quantity: q, UnitPrice: p}
			}
			invs[i] = invoice.New{
				Number:   fmt.Sprintf("%s-%d-%04d", data.prefix, now.Year(), i+1),
				Customer: invoice.Customer{ID: customerIDs[inv.customer]},
				Status:   inv.status,
				Currency: inv.currency,
				IssuedAt: now.Add(-time.Duration(inv.issuedAgo) * day),
				DueAt:    now.Add(time.Duration(inv.dueInDays) * day),
				Notes:    inv.notes,
				Lines:    lines,
			}
		}
		if _, err := invoice.Create(ctx, tx, invs...); err != nil {
			return err
		}
		seeded = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("seed tenant %s: %w", t.Slug, err)
	}
	return seeded, nil
}
