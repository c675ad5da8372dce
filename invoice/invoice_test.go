package invoice_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tenantctx"
)

func TestCreateAndLoad(t *testing.T) {
	t.Parallel()
	b := setup(t)
	issued := time.Date(2026, 1, 5, 9, 30, 0, 0, time.UTC)
	want := invoice.New{
		Number:   "ACME-0001",
		Customer: invoice.Customer{Name: "Zoë Müller", Company: "Müller GmbH", Email: "zoe@example.org", Address: "Hauptstraße 5\nMünchen"},
		Status:   "sent", Currency: "EUR", IssuedAt: issued, DueAt: issued.AddDate(0, 1, 0), Notes: "Payable within 30 days.",
		Lines: []invoice.Line{
			{Description: "Consulting", Quantity: dec("12.5"), UnitPrice: dec("96.00")},
			{Description: "Support hours", Quantity: dec("0.333"), UnitPrice: dec("30.00")},
			{Description: "Discount", Quantity: dec("1"), UnitPrice: dec("-50.00")},
		},
	}
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		ids, err := invoice.Create(ctx, tx, want, invoice.New{ID: 40, Number: "ACME-0040", Customer: invoice.Customer{Name: "Ada", Email: "ada@example.org"}})
		if err != nil {
			return err
		}
		if len(ids) != 2 || ids[0] != 1 || ids[1] != 40 {
			t.Fatalf("ids %v, want [1 40]", ids)
		}
		got, err := invoice.Load(ctx, tx, 1)
		if err != nil {
			return err
		}
		if !got.Amount.Equal(dec("1159.99")) {
			t.Errorf("amount = %s, want the lines' sum 1159.99", got.Amount)
		}
		if got.Number != want.Number || got.Status != "sent" || got.Currency != "EUR" || !got.IssuedAt.Equal(issued) ||
			!got.DueAt.Equal(want.DueAt) || got.Notes != want.Notes || got.Customer.Name != want.Customer.Name ||
			got.Customer.Company != want.Customer.Company || got.Customer.Email != want.Customer.Email ||
			got.Customer.Address != want.Customer.Address || got.Customer.ID == 0 {
			t.Errorf("Load = %+v, want %+v", got, want)
		}
		if len(got.Lines) != len(want.Lines) {
			t.Fatalf("lines %+v", got.Lines)
		}
		for i, l := range got.Lines {
			w := want.Lines[i]
			if l.Description != w.Description || !l.Quantity.Equal(w.Quantity) || !l.UnitPrice.Equal(w.UnitPrice) {
				t.Errorf("line %d = %+v, want %+v (in order, exact)", i, l, w)
			}
		}
		// Defaults: draft, USD, now(), no due date, amount 0; no lines; no
		// company or address.
		other, err := invoice.Load(ctx, tx, 40)
		if err != nil {
			return err
		}
		if other.Status != invoice.DefaultStatus || other.Currency != invoice.DefaultCurrency || other.IssuedAt.IsZero() ||
			!other.DueAt.IsZero() || !other.Amount.IsZero() ||
			len(other.Lines) != 0 || other.Customer.Company != "" || other.Customer.Address != "" {
			t.Errorf("defaults: %+v", other)
		}
		// An existing customer is billed again, not copied.
		ids, err = invoice.Create(ctx, tx, invoice.New{Number: "ACME-0041", Customer: invoice.Customer{ID: got.Customer.ID}})
		if err != nil {
			return err
		}
		again, err := invoice.Load(ctx, tx, ids[0])
		if err != nil || again.Customer.ID != got.Customer.ID {
			t.Errorf("second invoice of the customer: %+v, %v", again.Customer, err)
		}
		refs, err := invoice.Page(ctx, tx, 0, 2)
		if err != nil || len(refs) != 2 || refs[0] != (invoice.Ref{ID: 1, Number: "ACME-0001"}) || refs[1] != (invoice.Ref{ID: 2, Number: "ACME-0041"}) {
			t.Errorf("Page = %+v, %v", refs, err)
		}
		return nil
	})
	// The other tenant has the same ids free: schemas are apart.
	b.in(t, b.beta, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := invoice.Load(ctx, tx, 1); !errors.Is(err, invoice.ErrNotFound) {
			t.Errorf("Load in another tenant = %v, want ErrNotFound", err)
		}
		ok, err := invoice.Exists(ctx, tx, 1)
		if err != nil || ok {
			t.Errorf("Exists in another tenant = %v, %v", ok, err)
		}
		return nil
	})
}

func TestCreateRefusesWhatTheSchemaRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	err := schema.InTenant(tenantctx.WithTenant(t.Context(), b.acme), b.pool, func(ctx context.Context, tx pgx.Tx) error {
		_, err := invoice.Create(ctx, tx, invoice.New{Number: "X-1", Status: "lost", Customer: invoice.Customer{Name: "c", Email: "c@x"}})
		return err
	})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
		t.Fatalf("an invoice with status lost: %v, want a check violation", err)
	}
}

func TestDocuments(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := invoice.Create(ctx, tx, invoice.New{Number: "D-1", Customer: invoice.Customer{Name: "c", Email: "c@x"}}); err != nil {
			return err
		}
		if _, err := invoice.LoadDocument(ctx, tx, 1); !errors.Is(err, invoice.ErrNoDocument) {
			t.Errorf("LoadDocument before rendering = %v, want ErrNoDocument", err)
		}
		for _, sha := range []string{"aaa", "bbb"} { // a new render replaces the row
			d := invoice.Document{InvoiceID: 1, StorageKey: invoice.DocumentKey(1), SHA256: sha, Bytes: 42}
			if err := invoice.RecordDocument(ctx, tx, d); err != nil {
				return err
			}
		}
		got, err := invoice.LoadDocument(ctx, tx, 1)
		if err != nil {
			return err
		}
		if got.Number != "D-1" || got.StorageKey != "invoices/1.pdf" || got.SHA256 != "bbb" || got.Bytes != 42 || got.RenderedAt.IsZero() {
			t.Errorf("LoadDocument = %+v", got)
		}
		// The inputs hash and font path are kept, and Load reads them with
		// the invoice.
		d := invoice.Document{InvoiceID: 1, StorageKey: invoice.DocumentKey(1), SHA256: "ccc", Bytes: 43, InputsSHA256: "in", FontPath: "cp1252"}
		if err := invoice.RecordDocument(ctx, tx, d); err != nil {
			return err
		}
		inv, err := invoice.Load(ctx, tx, 1)
		if err != nil {
			return err
		}
		if doc := inv.Document; doc.SHA256 != "ccc" || doc.InputsSHA256 != "in" || doc.FontPath != "cp1252" || doc.Bytes != 43 || doc.StorageKey != "invoices/1.pdf" {
			t.Errorf("Load's document = %+v", doc)
		}
		// A document of a missing invoice is not recorded.
		d.InvoiceID = 99
		if err := invoice.RecordDocument(ctx, tx, d); !errors.Is(err, invoice.ErrNotFound) {
			t.Errorf("RecordDocument of a missing invoice = %v, want ErrNotFound", err)
		}
		return nil
	})
}

func TestReminderRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	d := day(2026, 3, 1)
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := invoice.Create(ctx, tx, invoice.New{Number: "R-1", Status: "overdue", Customer: invoice.Customer{Name: "c", Email: "c@x"}}); err != nil {
			return err
		}
		c, err := invoice.ClaimReminder(ctx, tx, 1, "c@x", d)
		if err != nil || c.Status != invoice.ReminderPending {
			t.Fatalf("first claim = %+v, %v; want pending", c, err)
		}
		if err := invoice.FinishReminder(ctx, tx, 1, invoice.ReminderSent, "c@x", d); err != nil {
			return err
		}
		c, err = invoice.ClaimReminder(ctx, tx, 1, "c@x", d)
		if err != nil || c != (invoice.Claim{Status: invoice.ReminderSent, SentOn: "2026-03-01"}) {
			t.Fatalf("claim after the send = %+v, %v; want sent on 2026-03-01", c, err)
		}
		// A time is judged by its date in its own location (the tenant's
		// zone): 01:00 on 1 March at UTC+3, 22:00 on 28 February UTC, is
		// 1 March's reminder.
		c, err = invoice.ClaimReminder(ctx, tx, 1, "c@x", d.Add(-2*time.Hour).In(time.FixedZone("x", 3*3600)))
		if err != nil || c != (invoice.Claim{Status: invoice.ReminderSent, SentOn: "2026-03-01"}) {
			t.Fatalf("claim of 1 March at UTC+3 = %+v, %v; want sent on 2026-03-01", c, err)
		}
		next := d.AddDate(0, 0, 1)
		c, err = invoice.ClaimReminder(ctx, tx, 1, "c@x", next)
		if err != nil || c.Status != invoice.ReminderPending {
			t.Fatalf("next day's claim = %+v, %v; want pending", c, err)
		}
		// A late run of day 1 on day 2 sees day 1's reminder and claims
		// nothing more.
		c, err = invoice.ClaimReminder(ctx, tx, 1, "c@x", d.AddDate(0, 0, 2), d)
		if err != nil || c != (invoice.Claim{Status: invoice.ReminderSent, SentOn: "2026-03-01"}) {
			t.Fatalf("claim of days 1 and 3 = %+v, %v; want sent on 2026-03-01", c, err)
		}
		// Day 2's run, late on day 3, claims and finishes both.
		later := d.AddDate(0, 0, 2)
		if c, err = invoice.ClaimReminder(ctx, tx, 1, "c@x", next, later); err != nil || c.Status != invoice.ReminderPending {
			t.Fatalf("claim of days 2 and 3 = %+v, %v; want pending", c, err)
		}
		if err := invoice.FinishReminder(ctx, tx, 1, invoice.ReminderSent, "c@x", later, next); err != nil {
			return err
		}
		for _, dd := range []time.Time{next, later} {
			if c, err := invoice.ClaimReminder(ctx, tx, 1, "c@x", dd); err != nil || c.Status != invoice.ReminderSent {
				t.Errorf("claim of %s after the late send = %+v, %v; want sent", dd.Format(time.DateOnly), c, err)
			}
		}
		var rows int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM invoice_reminders WHERE invoice_id = 1`).Scan(&rows); err != nil || rows != 3 {
			t.Errorf("%d reminder rows, %v; want 3 (days 1, 2 and 3)", rows, err)
		}
		return nil
	})
}

func TestOverdue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	past, future := time.Now().Add(-72*time.Hour), time.Now().Add(72*time.Hour)
	today := day(2026, 3, 1)
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		c := invoice.Customer{Name: "c", Email: "c@x"}
		ids, err := invoice.Create(ctx, tx,
			invoice.New{Number: "late", Status: "sent", DueAt: past, Customer: c},
			invoice.New{Number: "on-time", Status: "sent", DueAt: future, Customer: c},
			invoice.New{Number: "paid", Status: "paid", DueAt: past, Customer: c},
			invoice.New{Number: "reminded", Status: "overdue", DueAt: past, Customer: c},
			invoice.New{Number: "reminded-yesterday", Status: "overdue", DueAt: past, Customer: c},
		)
		if err != nil {
			return err
		}
		for id, dd := range map[int64]time.Time{ids[3]: today, ids[4]: today.AddDate(0, 0, -1)} {
			if _, err := invoice.ClaimReminder(ctx, tx, id, "c@x", dd); err != nil {
				return err
			}
			if err := invoice.FinishReminder(ctx, tx, id, invoice.ReminderSent, "c@x", dd); err != nil {
				return err
			}
		}
		n, err := invoice.MarkOverdue(ctx, tx, time.Now())
		if err != nil || n != 1 {
			t.Errorf("MarkOverdue = %d, %v; want 1", n, err)
		}
		return nil
	})
}

// TestQueueLoadDocument: through schema.InTenantBatch, an invoice without a
// document is found == false and no error (the unit commits), and one with
// a document loads it.
func TestQueueLoadDocument(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := tenantctx.WithTenant(t.Context(), b.acme)
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		_, err := invoice.Create(ctx, tx, invoice.New{Number: "Q-1", Customer: invoice.Customer{Name: "c", Email: "c@x"}})
		return err
	})
	load := func(id int64) (invoice.Document, bool) {
		t.Helper()
		var doc invoice.Document
		found := true
		var batch pgx.Batch
		invoice.QueueLoadDocument(&batch, id, &doc, &found)
		if err := schema.InTenantBatch(ctx, b.pool, &batch); err != nil {
			t.Fatalf("InTenantBatch(QueueLoadDocument(%d)) = %v", id, err)
		}
		return doc, found
	}
	if _, found := load(1); found {
		t.Error("an invoice without a document: found")
	}
	if _, found := load(99); found {
		t.Error("a missing invoice: found")
	}
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		return invoice.RecordDocument(ctx, tx, invoice.Document{InvoiceID: 1, StorageKey: invoice.DocumentKey(1), SHA256: "abc", Bytes: 7, InputsSHA256: "in", FontPath: "utf8"})
	})
	doc, found := load(1)
	if !found || doc.InvoiceID != 1 || doc.Number != "Q-1" || doc.SHA256 != "abc" || doc.Bytes != 7 || doc.FontPath != "utf8" || doc.InputsSHA256 != "in" {
		t.Errorf("QueueLoadDocument = %+v, found %v", doc, found)
	}
}

// TestMarkOverdueIfDueTouchesUpdatedAt: an invoice a reminder marks overdue
// records the change in updated_at, as one the sweep marks does (the app
// reads updated_at to see which invoices changed); one it does not mark
// keeps its updated_at.
func TestMarkOverdueIfDueTouchesUpdatedAt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		c := invoice.Customer{Name: "c", Email: "c@x"}
		ids, err := invoice.Create(ctx, tx,
			invoice.New{Number: "late", Status: "sent", DueAt: time.Now().Add(-72 * time.Hour), Customer: c},
			invoice.New{Number: "paid", Status: "paid", DueAt: time.Now().Add(-72 * time.Hour), Customer: c},
			invoice.New{Number: "late-queued", Status: "sent", DueAt: time.Now().Add(-72 * time.Hour), Customer: c},
			invoice.New{Number: "paid-queued", Status: "paid", DueAt: time.Now().Add(-72 * time.Hour), Customer: c},
		)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE invoices SET updated_at = $1`, old); err != nil {
			return err
		}
		for i, want := range []bool{true, false, true, false} {
			var marked bool
			var err error
			if i < 2 {
				marked, err = invoice.MarkOverdueIfDue(ctx, tx, ids[i], time.Now())
			} else {
				// QueueMarkOverdueIfDue, with the load that reads the mark
				// in the same batch.
				var inv invoice.Invoice
				b := &pgx.Batch{}
				invoice.QueueMarkOverdueIfDue(b, ids[i], time.Now(), &marked)
				invoice.QueueLoad(b, ids[i], &inv)
				err = tx.SendBatch(ctx, b).Close()
				if wantStatus := map[bool]string{true: "overdue", false: "paid"}[want]; err == nil && inv.Status != wantStatus {
					t.Errorf("invoice %d loaded after the queued mark: status %q, want %q", ids[i], inv.Status, wantStatus)
				}
			}
			if err != nil || marked != want {
				t.Errorf("MarkOverdueIfDue(%d) = %v, %v; want %v", ids[i], marked, err, want)
			}
			var updated time.Time
			if err := tx.QueryRow(ctx, `SELECT updated_at FROM invoices WHERE id = $1`, ids[i]).Scan(&updated); err != nil {
				return err
			}
			if touched := !updated.Equal(old); touched != want {
				t.Errorf("invoice %d (marked %v): updated_at %s", ids[i], want, updated)
			}
		}
		return nil
	})
}
