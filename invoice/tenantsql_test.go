package invoice_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestQueueLoadForIsolation: two tenants hold an invoice with the same id;
// the tenant-written load and record statements, run on one connection
// with the tenants interleaved (so each tenant's statement is prepared and
// its plan reused), read and write only the pinned tenant's rows.
func TestQueueLoadForIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tn := range []tenantctx.Tenant{b.acme, b.beta} {
		b.in(t, tn, func(ctx context.Context, tx pgx.Tx) error {
			_, err := invoice.Create(ctx, tx, invoice.New{Number: "N-" + tn.Slug,
				Customer: invoice.Customer{Name: "Customer of " + tn.Slug, Email: "c@x"},
				Lines:    []invoice.Line{{Description: "line of " + tn.Slug, Quantity: dec("1"), UnitPrice: dec("2.50")}}})
			return err
		})
	}
	for round := range 8 {
		for _, tn := range []tenantctx.Tenant{b.acme, b.beta} {
			ctx := tenantctx.WithTenant(t.Context(), tn)
			var first pgx.Batch
			schema.QueueGenericPlans(&first)
			var inv invoice.Invoice
			if err := invoice.QueueLoadFor(&first, tn.Schema, 1, &inv); err != nil {
				t.Fatal(err)
			}
			var mode string
			first.Queue("SELECT current_setting('plan_cache_mode')").QueryRow(func(row pgx.Row) error { return row.Scan(&mode) })
			sha := "sha-" + tn.Slug
			err := schema.InTenantBatches(ctx, b.pool, &first, func(ctx context.Context) (*pgx.Batch, error) {
				last := &pgx.Batch{}
				return last, invoice.QueueRecordDocumentFor(last, tn.Schema, invoice.Document{InvoiceID: 1, StorageKey: invoice.DocumentKey(1), SHA256: sha, Bytes: int64(round)})
			})
			if err != nil {
				t.Fatalf("round %d, tenant %s: %v", round, tn.Slug, err)
			}
			if inv.Number != "N-"+tn.Slug || inv.Customer.Name != "Customer of "+tn.Slug || len(inv.Lines) != 1 || inv.Lines[0].Description != "line of "+tn.Slug {
				t.Fatalf("round %d, tenant %s: loaded %+v", round, tn.Slug, inv)
			}
			if round > 0 && (inv.Document.SHA256 != sha || inv.Document.Bytes != int64(round-1)) {
				t.Fatalf("round %d, tenant %s: document %+v, want the one recorded for this tenant in the round before", round, tn.Slug, inv.Document)
			}
			if mode != "force_generic_plan" {
				t.Errorf("plan_cache_mode in the unit = %q, want force_generic_plan", mode)
			}
		}
	}
	// The setting ended with the unit: the next one starts from the default.
	var mode string
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT current_setting('plan_cache_mode')").Scan(&mode)
	})
	if mode != "auto" {
		t.Errorf("plan_cache_mode after the unit = %q, want auto", mode)
	}
	// A missing invoice is ErrNotFound, also on the record.
	ctx := tenantctx.WithTenant(t.Context(), b.acme)
	var first pgx.Batch
	var inv invoice.Invoice
	if err := invoice.QueueLoadFor(&first, b.acme.Schema, 99, &inv); err != nil {
		t.Fatal(err)
	}
	if err := schema.InTenantBatch(ctx, b.pool, &first); !errors.Is(err, invoice.ErrNotFound) {
		t.Errorf("QueueLoadFor of a missing invoice = %v, want ErrNotFound", err)
	}
	var rec pgx.Batch
	if err := invoice.QueueRecordDocumentFor(&rec, b.acme.Schema, invoice.Document{InvoiceID: 99, StorageKey: invoice.DocumentKey(99)}); err != nil {
		t.Fatal(err)
	}
	if err := schema.InTenantBatch(ctx, b.pool, &rec); !errors.Is(err, invoice.ErrNotFound) {
		t.Errorf("QueueRecordDocumentFor of a missing invoice = %v, want ErrNotFound", err)
	}
}

// TestQueueLoadForRefusesBadSchemas: a schema name that is not a tenant
// schema queues nothing.
func TestQueueLoadForRefusesBadSchemas(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"", "public", `tenant_x"; DROP TABLE invoices; --`, "pg_catalog", "tenant_A"} {
		var b pgx.Batch
		var inv invoice.Invoice
		if err := invoice.QueueLoadFor(&b, name, 1, &inv); err == nil {
			t.Errorf("QueueLoadFor(%q) = nil error", name)
		}
		if err := invoice.QueueRecordDocumentFor(&b, name, invoice.Document{InvoiceID: 1}); err == nil {
			t.Errorf("QueueRecordDocumentFor(%q) = nil error", name)
		}
		if b.Len() != 0 {
			t.Errorf("schema %q: %d statements queued", name, b.Len())
		}
	}
}

// TestTenantWrittenStatementsReachNoOtherOwnersTables: the statements
// written for a schema name its tables, so they do not depend on the pin
// to find them. A unit of a tenant whose schema now records another owner
// (the slug's next tenant, after the first one was deleted: P17) is pinned
// to no schema; its tenant-written load and record must then reach none of
// the new owner's rows either, as an unqualified statement would not.
func TestTenantWrittenStatementsReachNoOtherOwnersTables(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	owner, err := tenantctx.New("reused", "New owner", "pro")
	if err != nil {
		t.Fatal(err)
	}
	late, err := tenantctx.New("reused", "Deleted tenant", "pro")
	if err != nil {
		t.Fatal(err)
	}
	if owner.ID == late.ID || owner.Schema != late.Schema {
		t.Fatalf("tenants %+v and %+v: want two ids, one schema", owner, late)
	}
	if _, err := schema.MigrateWith(ctx, b.pool, owner.Schema, schema.MigrateOptions{Create: &schema.Creation{Owner: owner.ID}}); err != nil {
		t.Fatal(err)
	}
	b.in(t, owner, func(ctx context.Context, tx pgx.Tx) error {
		_, err := invoice.Create(ctx, tx, invoice.New{Number: "N-owner",
			Customer: invoice.Customer{Name: "Customer of the new owner", Email: "c@x"},
			Lines:    []invoice.Line{{Description: "line", Quantity: dec("1"), UnitPrice: dec("2.50")}}})
		return err
	})

	lateCtx := tenantctx.WithTenant(ctx, late)
	var first pgx.Batch
	var inv invoice.Invoice
	if err := invoice.QueueLoadFor(&first, late.Schema, 1, &inv); err != nil {
		t.Fatal(err)
	}
	if err := schema.InTenantBatch(lateCtx, b.pool, &first); err == nil || inv.Number != "" {
		t.Errorf("the late tenant's load = %v, loaded %q: it reached the new owner's invoice", err, inv.Number)
	}
	var rec pgx.Batch
	if err := invoice.QueueRecordDocumentFor(&rec, late.Schema, invoice.Document{InvoiceID: 1, StorageKey: invoice.DocumentKey(1), SHA256: "sha-late"}); err != nil {
		t.Fatal(err)
	}
	if err := schema.InTenantBatch(lateCtx, b.pool, &rec); err == nil {
		t.Errorf("the late tenant's record = nil error, want one")
	}
	b.in(t, owner, func(ctx context.Context, tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM invoice_documents").Scan(&n); err != nil {
			return err
		}
		if n != 0 {
			t.Errorf("the new owner's schema holds %d documents the late tenant recorded", n)
		}
		return nil
	})
	// The owner's own units still reach its tables.
	ownerCtx := tenantctx.WithTenant(ctx, owner)
	var own pgx.Batch
	if err := invoice.QueueLoadFor(&own, owner.Schema, 1, &inv); err != nil {
		t.Fatal(err)
	}
	if err := schema.InTenantBatch(ownerCtx, b.pool, &own); err != nil || inv.Number != "N-owner" {
		t.Errorf("the owner's load = %v, loaded %q", err, inv.Number)
	}
}
