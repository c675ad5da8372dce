package pdf_test

import (
	"bytes"
	"context"
	"fmt"
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
	if _, err := pdf.Render(context.Background(), &buf, inv); err != nil {
		fmt.Println("render:", err)
		return
	}
	fmt.Println(bytes.HasPrefix(buf.Bytes(), []byte("%PDF-")))
	fmt.Println(pdf.FormatMoney(pdf.Subtotal(inv), inv.Currency))
	// Output:
	// true
	// EUR 1,234.00
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
