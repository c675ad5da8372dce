package pdf

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

func TestRenderContent(t *testing.T) {
	t.Parallel()
	inv := sampleInvoice()
	text := pdfText(t, render(t, Renderer{}, inv), 0)

	want := []string{
		"Acme Ωmega Łódź", // issuer header
		"INVOICE",
		"INV-2026-0042",
		"2026-03-01", // issued
		"2026-03-31", // due
		"sent",
		"Bill to",
		"Zoë Müller",
		"Müller GmbH",
		"zoe@mueller.example",
		"Hauptstraße 1",
		"10115 Berlin",
		"Description", "Quantity", "Unit price (EUR)", "Amount (EUR)",
		"1,200.00", "34.50", "-10.00", // line totals
		"Thank you for your business.",
		"Payable within 30 days.",
		"Page 1 of 1",
	}
	for _, l := range inv.Lines {
		want = append(want, l.Description)
	}
	for _, s := range want {
		if !strings.Contains(text, s) {
			t.Errorf("PDF text lacks %q", s)
		}
	}

	total := FormatMoney(Subtotal(inv), inv.Currency)
	if total != "EUR 1,224.50" {
		t.Fatalf("total of the sample = %q, want EUR 1,224.50", total)
	}
	for _, label := range []string{"Subtotal", "Total"} {
		re := regexp.MustCompile(`(?m)^\s*` + label + `\s+` + regexp.QuoteMeta(total) + `\s*$`)
		if !re.MatchString(text) {
			t.Errorf("PDF text has no line %q followed by %q:\n%s", label, total, text)
		}
	}
}

func TestRenderOmitsEmptyCustomerFields(t *testing.T) {
	t.Parallel()
	inv := sampleInvoice()
	inv.Customer = Customer{Name: "Zoë"}
	inv.Notes = ""
	text := pdfText(t, render(t, Renderer{}, inv), 0)
	if !strings.Contains(text, "Zoë") {
		t.Errorf("PDF text lacks the customer name:\n%s", text)
	}
	for _, s := range []string{"Müller GmbH", "zoe@mueller.example", "Berlin", "Notes"} {
		if strings.Contains(text, s) {
			t.Errorf("PDF text has %q, which the invoice does not set", s)
		}
	}
}

func TestRenderText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		tenant      string
		customer    Customer
		description string
		want        []string
	}{
		{
			name:        "German and Polish",
			tenant:      "Łódź Software sp. z o.o.",
			customer:    Customer{Name: "Zoë", Company: "Müller GmbH", Address: "Straße 5, Łódź"},
			description: "Ωmega licence, Größe XL",
			want:        []string{"Łódź Software sp. z o.o.", "Zoë", "Müller GmbH", "Straße 5, Łódź", "Ωmega licence, Größe XL"},
		},
		{
			name:        "Greek, Cyrillic, Nordic",
			tenant:      "Ærøskøbing ApS",
			customer:    Customer{Name: "Αλέξης Παπαδόπουλος", Company: "ООО Ромашка"},
			description: "Überweisung – Kaffee für 5 € • café",
			want:        []string{"Ærøskøbing ApS", "Αλέξης Παπαδόπουλος", "ООО Ромашка", "Überweisung – Kaffee für 5 € • café"},
		},
		{
			name:        "outside the BMP is replaced, not a crash",
			tenant:      "Party 🎉 GmbH",
			customer:    Customer{Name: "Zoë 😀"},
			description: "Balloons 🎈 x10",
			want:        []string{"Party \uFFFD GmbH", "Zoë \uFFFD", "Balloons \uFFFD x10"},
		},
		{
			name:        "the page count alias of fpdf is text",
			tenant:      "Acme {nb}",
			customer:    Customer{Name: "Zoë {nb}"},
			description: "Ωmega {nb} \x01nb\x01",
			want:        []string{"Acme {nb}", "Zoë {nb}", "Ωmega {nb} \uFFFDnb\uFFFD", "Page 1 of 1"},
		},
		{
			name:        "the page count alias of fpdf is text, single-byte",
			tenant:      "Acme {nb}",
			customer:    Customer{Name: "Zoë {nb}"},
			description: "Order {nb}",
			want:        []string{"Acme {nb}", "Zoë {nb}", "Order {nb}", "Page 1 of 1"},
		},
		{
			name:        "PDF string syntax is escaped",
			tenant:      `Back\slash (Paren) Ltd`,
			customer:    Customer{Name: "O'Brien (Sr.)"},
			description: `Item (a) \ b`,
			want:        []string{`Back\slash (Paren) Ltd`, "O'Brien (Sr.)", `Item (a) \ b`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inv := sampleInvoice()
			inv.TenantName = tt.tenant
			inv.Customer = tt.customer
			inv.Lines = []Line{{Description: tt.description, Quantity: dec("1"), UnitPrice: dec("5")}}
			text := pdfText(t, render(t, Renderer{}, inv), 0)
			for _, s := range tt.want {
				if !strings.Contains(text, s) {
					t.Errorf("PDF text lacks %q:\n%s", s, text)
				}
			}
		})
	}
}

func TestRenderTotals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		currency string
		lines    []Line
		want     string
	}{
		{"JPY", "JPY", []Line{{Description: "Tea", Quantity: dec("3"), UnitPrice: dec("1500")}}, "JPY 4,500"},
		{"KWD", "KWD", []Line{{Description: "Dates", Quantity: dec("2"), UnitPrice: dec("1.2345")}}, "KWD 2.469"},
		{"negative total", "EUR", []Line{
			{Description: "Service", Quantity: dec("1"), UnitPrice: dec("10")},
			{Description: "Credit note", Quantity: dec("1"), UnitPrice: dec("-25")},
		}, "EUR -15.00"},
		{"large EUR", "EUR", []Line{{Description: "Ship", Quantity: dec("1"), UnitPrice: dec("9999999999.99")}}, "EUR 9,999,999,999.99"},
		{"large KWD", "KWD", []Line{{Description: "Oil", Quantity: dec("1"), UnitPrice: dec("9999999999.999")}}, "KWD 9,999,999,999.999"},
		{"no lines", "USD", nil, "USD 0.00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inv := sampleInvoice()
			inv.Currency = tt.currency
			inv.Lines = tt.lines
			if got := FormatMoney(Subtotal(inv), inv.Currency); got != tt.want {
				t.Fatalf("FormatMoney(Subtotal) = %q, want %q", got, tt.want)
			}
			text := pdfText(t, render(t, Renderer{}, inv), 0)
			re := regexp.MustCompile(`(?m)^\s*Total\s+` + regexp.QuoteMeta(tt.want) + `\s*$`)
			if !re.MatchString(text) {
				t.Errorf("PDF text has no line %q:\n%s", "Total "+tt.want, text)
			}
			for _, l := range tt.lines {
				amount := formatAmount(LineTotal(l, inv.Currency), inv.Currency)
				if !strings.Contains(text, amount) {
					t.Errorf("PDF text lacks line total %q of %q", amount, l.Description)
				}
			}
			if len(tt.lines) == 0 && !strings.Contains(text, "No line items.") {
				t.Errorf("PDF text lacks the empty-table row:\n%s", text)
			}
		})
	}
}

func TestRenderPaginates500Lines(t *testing.T) {
	t.Parallel()
	inv := sampleInvoice()
	inv.Lines = manyLines(500)
	doc := render(t, Renderer{}, inv)

	pages := pageCount(t, doc)
	if pages < 10 {
		t.Fatalf("500 lines on %d pages; want them spread over many pages", pages)
	}
	header := []string{"Description", "Quantity", "Unit price (EUR)", "Amount (EUR)"}
	var all strings.Builder
	for p := 1; p <= pages; p++ {
		text := pdfText(t, doc, p)
		all.WriteString(text)
		for _, s := range append(header, inv.TenantName, fmt.Sprintf("Page %d of %d", p, pages)) {
			if !strings.Contains(text, s) {
				t.Errorf("page %d of %d lacks %q", p, pages, s)
			}
		}
		if !strings.Contains(text, "Item number") {
			t.Errorf("page %d of %d has no line items", p, pages)
		}
	}

	// Every line exactly once, in order, across the pages.
	text := all.String()
	last := -1
	for i, l := range inv.Lines {
		if n := strings.Count(text, l.Description); n != 1 {
			t.Errorf("line %d %q printed %d times, want once", i, l.Description, n)
			continue
		}
		at := strings.Index(text, l.Description)
		if at < last {
			t.Errorf("line %d %q printed before the line above it", i, l.Description)
		}
		last = at
	}
	total := FormatMoney(Subtotal(inv), inv.Currency)
	if lastPage := pdfText(t, doc, pages); !strings.Contains(lastPage, total) {
		t.Errorf("last page lacks the total %q", total)
	}
}

func TestRenderRowTallerThanAPage(t *testing.T) {
	t.Parallel()
	for _, tt := range pathIssuers() {
		t.Run(string(tt.path), func(t *testing.T) {
			t.Parallel()
			testRowTallerThanAPage(t, tt.issuer, tt.path)
		})
	}
}

// testRowTallerThanAPage checks a row of many lines on an invoice from
// issuer, which takes path.
func testRowTallerThanAPage(t *testing.T, issuer string, path FontPath) {
	var desc strings.Builder
	for i := range 150 {
		fmt.Fprintf(&desc, "paragraph %03d\n", i)
	}
	inv := sampleInvoice()
	inv.TenantName = issuer
	inv.Lines = []Line{
		{Description: desc.String(), Quantity: dec("1"), UnitPrice: dec("1")},
		{Description: "Last item", Quantity: dec("2"), UnitPrice: dec("3")},
	}
	doc, res := renderResult(t, Renderer{}, inv)
	if res.FontPath != path {
		t.Fatalf("font path %s, want %s", res.FontPath, path)
	}
	pages := pageCount(t, doc)
	if pages < 3 {
		t.Fatalf("150-line description on %d pages, want at least 3", pages)
	}
	var all strings.Builder
	for p := 1; p <= pages; p++ {
		text := pdfText(t, doc, p)
		all.WriteString(text)
		if !strings.Contains(text, "Unit price (EUR)") {
			t.Errorf("page %d lacks the table header", p)
		}
	}
	text := all.String()
	for i := range 150 {
		if s := fmt.Sprintf("paragraph %03d", i); strings.Count(text, s) != 1 {
			t.Errorf("%q printed %d times, want once", s, strings.Count(text, s))
		}
	}
	if !strings.Contains(text, "Last item") || !strings.Contains(text, "EUR 7.00") {
		t.Errorf("text after the tall row is missing:\n%s", text)
	}
}
