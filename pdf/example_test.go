package pdf_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/invoicing/tenantworker/pdf"
	"github.com/shopspring/decimal"
)

func ExampleRender() {
	inv := pdf.Invoice{
		TenantName: "Acme GmbH",
		Number:     "INV-2026-0042",
		IssuedAt:   time.Date(2026, time.March, 1, 0, 0, 0, 0, time.UTC),
		DueAt:      time.Date(2026, time.March, 31, 0, 0, 0, 0, time.UTC),
		Status:     "sent",
		Currency:   "EUR",
		Customer:   pdf.Customer{Name: "Zoë Müller", Company: "Müller GmbH"},
		Lines: []pdf.Line{
			{Description: "Consulting", Quantity: decimal.NewFromInt(10), UnitPrice: decimal.RequireFromString("123.45")},
			{Description: "Discount", Quantity: decimal.NewFromInt(1), UnitPrice: decimal.RequireFromString("-0.5")},
		},
	}
	var buf bytes.Buffer
	res, err := pdf.Render(context.Background(), &buf, inv)
	if err != nil {
		fmt.Println("render:", err)
		return
	}
	fmt.Println(bytes.HasPrefix(buf.Bytes(), []byte("%PDF-")), res.Pages, res.Bytes == int64(buf.Len()))
	fmt.Println(pdf.FormatMoney(pdf.Subtotal(inv), inv.Currency))

	// The font path follows the characters of the invoice.
	fmt.Println(res.FontPath)
	inv.Customer.Name = "Łucja Wąs"
	res, _ = pdf.Render(context.Background(), io.Discard, inv)
	fmt.Println(res.FontPath)
	inv.Customer.Name = "Αλέξης Παπαδόπουλος"
	res, _ = pdf.Render(context.Background(), io.Discard, inv)
	fmt.Println(res.FontPath)
	// Output:
	// true 1 true
	// EUR 1,234.00
	// cp1252
	// cp1250
	// utf8
}

func ExampleRenderer() {
	r := pdf.Renderer{MaxLines: 2}
	inv := pdf.Invoice{Number: "INV-1", Currency: "EUR", Lines: make([]pdf.Line, 3)}
	_, err := r.Render(context.Background(), io.Discard, inv)
	fmt.Println(errors.Is(err, pdf.ErrTooLarge), errors.Is(err, pdf.ErrInvalidInvoice))
	fmt.Println(err)
	// Output:
	// true true
	// render invoice INV-1: invalid invoice: too large: 3 lines, more than the limit of 2
}

func ExampleFormatMoney() {
	fmt.Println(pdf.FormatMoney(decimal.RequireFromString("1234.5"), "EUR"))
	fmt.Println(pdf.FormatMoney(decimal.RequireFromString("1234.5"), "JPY"))
	fmt.Println(pdf.FormatMoney(decimal.RequireFromString("-0.1235"), "KWD"))
	// Output:
	// EUR 1,234.50
	// JPY 1,235
	// KWD -0.124
}
