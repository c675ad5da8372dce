package devstack

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tenantctx"
)

func TestSeedTenantOnceWithDemoData(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pool, err := schema.NewPool(ctx, testenv.Postgres(t), schema.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	for _, d := range demoTenants {
		t.Run(d.slug, func(t *testing.T) {
			tn, err := tenantctx.New(d.slug, d.name, "free")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := schema.Migrate(ctx, pool, tn.Schema, 0); err != nil {
				t.Fatalf("migrate: %v", err)
			}
			now := time.Now()
			seeded, err := seedTenant(ctx, pool, tn, d.data, now)
			if err != nil || !seeded {
				t.Fatalf("first seed = %v, %v; want true", seeded, err)
			}
			seeded, err = seedTenant(ctx, pool, tn, d.data, now.Add(time.Hour))
			if err != nil || seeded {
				t.Fatalf("second seed = %v, %v; want false (already seeded)", seeded, err)
			}

			inv, err := firstInvoice(ctx, pool, tn)
			if err != nil {
				t.Fatal(err)
			}
			if inv.ID != 1 {
				t.Fatalf("first invoice id %d, want 1 (the banner's commands use it)", inv.ID)
			}

			var (
				invoices, customers, lines, pastDueSent, paid, draft, currencies int
				firstStatus, firstNumber                                         string
				nonASCII                                                         bool
			)
			err = schema.InTenant(tenantctx.WithTenant(ctx, tn), pool, func(ctx context.Context, tx pgx.Tx) error {
				return tx.QueryRow(ctx, `SELECT
					(SELECT count(*) FROM invoices),
					(SELECT count(*) FROM customers),
					(SELECT count(*) FROM line_items),
					(SELECT count(*) FROM invoices WHERE status = 'sent' AND due_date < now()),
					(SELECT count(*) FROM invoices WHERE status = 'paid'),
					(SELECT count(*) FROM invoices WHERE status = 'draft'),
					(SELECT count(DISTINCT currency) FROM invoices),
					(SELECT status FROM invoices WHERE id = 1),
					(SELECT number FROM invoices WHERE id = 1),
					(SELECT bool_or(description ~ '[^\x01-\x7f]') FROM line_items WHERE invoice_id = 1)`).
					Scan(&invoices, &customers, &lines, &pastDueSent, &paid, &draft, &currencies, &firstStatus, &firstNumber, &nonASCII)
			})
			if err != nil {
				t.Fatalf("inspect: %v", err)
			}
			if invoices != len(d.data.invoices) || customers != len(d.data.customers) {
				t.Fatalf("%d invoices, %d customers after two seeds; want %d, %d", invoices, customers, len(d.data.invoices), len(d.data.customers))
			}
			if pastDueSent < 2 || paid < 1 || draft < 1 || currencies != 2 || lines < invoices {
				t.Fatalf("demo mix: %d sent past due, %d paid, %d draft, %d currencies, %d lines", pastDueSent, paid, draft, currencies, lines)
			}
			if firstStatus != "sent" || firstNumber != inv.Number || !nonASCII {
				t.Fatalf("invoice 1: status %s, number %s (firstInvoice %s), non-ASCII lines %v", firstStatus, firstNumber, inv.Number, nonASCII)
			}
		})
	}
}

func TestSeedDataSpellsNamesAsGiven(t *testing.T) {
	t.Parallel()
	var all string
	for _, d := range demoTenants {
		for _, c := range d.data.customers {
			all += c.name + c.company + c.address
		}
		for _, inv := range d.data.invoices {
			for _, l := range inv.lines {
				all += l.description
			}
		}
	}
	for _, want := range []string{"Müller GmbH", "Zoë", "Łódź", "Ωmega"} {
		if !strings.Contains(all, want) {
			t.Errorf("demo data lacks %q", want)
		}
	}
}
