package invoice_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/pdf"
	"github.com/invoicing/tenantworker/schema"
)

// TestCurrencyCaseFoldingAgreesWithSQL: a currency code the app
// lower-cased in a Turkish locale ("ISK" -> "ısk", dotless i) must load
// as a code that rounds to the same minor units minor_units() used for
// the stored amount.
func TestCurrencyCaseFoldingAgreesWithSQL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		var cust int64
		if err := tx.QueryRow(ctx, appCustomerSQL, "c", "c@x", nil).Scan(&cust); err != nil {
			return err
		}
		for _, stored := range []string{"ısk", "ıqd", "bıf", "uyı"} {
			var id int64
			if err := tx.QueryRow(ctx, appInvoiceFullSQL, cust, "N-"+stored, "sent", "0", stored, nil, "").Scan(&id); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, appLineFullSQL, id, "x", "1", "10.55"); err != nil {
				return err
			}
			got, err := invoice.Load(ctx, tx, id)
			if err != nil {
				return err
			}
			var sqlUnits int32
			var sqlSum string
			if err := tx.QueryRow(ctx, `SELECT minor_units(currency), (SELECT sum(round(quantity * unit_price, minor_units(i.currency)))::text FROM line_items WHERE invoice_id = i.id) FROM invoices i WHERE id = $1`,
				id).Scan(&sqlUnits, &sqlSum); err != nil {
				return err
			}
			if goUnits := pdf.MinorUnits(got.Currency); goUnits != sqlUnits {
				t.Errorf("currency stored as %q loads as %q: document rounds to %d digits (sum %s), minor_units() in SQL to %d (sum %s)",
					stored, got.Currency, goUnits, pdf.Subtotal(asPDF(got)), sqlUnits, sqlSum)
			}
		}
		return nil
	})
}

// Many lines, unicode, explicit positions out of insertion order.
func TestManyLinesOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		n := invoice.New{Number: "MANY", Customer: invoice.Customer{Name: "Łódź ✓", Email: "l@x"}}
		for i := 0; i < 3000; i++ {
			n.Lines = append(n.Lines, invoice.Line{Description: fmt.Sprintf("ligne %d — 日本 🚀 '\"\\", i), Quantity: dec("999999999.999"), UnitPrice: dec("-0.01")})
		}
		n.Amount.Valid = true
		ids, err := invoice.Create(ctx, tx, n)
		if err != nil {
			return err
		}
		got, err := invoice.Load(ctx, tx, ids[0])
		if err != nil {
			return err
		}
		if len(got.Lines) != 3000 {
			t.Fatalf("%d lines", len(got.Lines))
		}
		for i, l := range got.Lines {
			if !strings.HasPrefix(l.Description, fmt.Sprintf("ligne %d ", i)) || !l.Quantity.Equal(dec("999999999.999")) {
				t.Fatalf("line %d = %+v", i, l)
			}
		}
		return nil
	})
	_ = schema.LatestVersion
}

// Create's computed amount must be the total the document prints from the
// stored lines, also when a value has more digits than its column keeps.
func TestCreateAmountMatchesStoredLines(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.in(t, b.acme, func(ctx context.Context, tx pgx.Tx) error {
		for i, app := range []bool{false, true} {
			n := invoice.New{Number: fmt.Sprintf("SUB-%d", i), Customer: invoice.Customer{Name: "c", Email: fmt.Sprintf("c%d@x", i)}, Currency: "EUR", AppColumns: app,
				Lines: []invoice.Line{{Description: "x", Quantity: dec("3"), UnitPrice: dec("0.005")}, {Description: "y", Quantity: dec("0.0004"), UnitPrice: dec("1000")}}}
			ids, err := invoice.Create(ctx, tx, n)
			if err != nil {
				return err
			}
			got, err := invoice.Load(ctx, tx, ids[0])
			if err != nil {
				return err
			}
			if sum := pdf.Subtotal(asPDF(got)); !sum.Equal(got.Amount) {
				t.Errorf("AppColumns=%v: stored amount %s, but the stored lines %+v sum to %s", app, got.Amount, got.Lines, sum)
			}
		}
		return nil
	})
}
