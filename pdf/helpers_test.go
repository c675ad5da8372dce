package pdf

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// sampleInvoice returns a small valid invoice with non-ASCII text.
func sampleInvoice() Invoice {
	return Invoice{
		TenantName: "Acme Ωmega Łódź",
		Number:     "INV-2026-0042",
		IssuedAt:   time.Date(2026, time.March, 1, 9, 30, 0, 0, time.UTC),
		DueAt:      time.Date(2026, time.March, 31, 0, 0, 0, 0, time.UTC),
		Status:     "sent",
		Currency:   "EUR",
		Customer: Customer{
			Name:    "Zoë Müller",
			Company: "Müller GmbH",
			Email:   "zoe@mueller.example",
			Address: "Hauptstraße 1\n10115 Berlin",
		},
		Lines: []Line{
			{Description: "Consulting", Quantity: dec("10"), UnitPrice: dec("120.00")},
			{Description: "Licence Ωmega", Quantity: dec("1"), UnitPrice: dec("34.5")},
			{Description: "Early-payment discount", Quantity: dec("1"), UnitPrice: dec("-10")},
		},
		Notes: "Thank you for your business.\nPayable within 30 days.",
	}
}

// manyLines returns n distinct line items.
func manyLines(n int) []Line {
	lines := make([]Line, n)
	for i := range lines {
		lines[i] = Line{
			Description: fmt.Sprintf("Item number %04d", i+1),
			Quantity:    decimal.NewFromInt(int64(i%7 + 1)),
			UnitPrice:   decimal.New(int64(1000+i), -2),
		}
	}
	return lines
}

// dec parses a decimal literal, panicking on a typo in a test.
func dec(s string) decimal.Decimal {
	return decimal.RequireFromString(s)
}

// render renders inv with r and fails the test on an error.
func render(t testing.TB, r Renderer, inv Invoice) []byte {
	t.Helper()
	doc, _ := renderResult(t, r, inv)
	return doc
}

// renderResult renders inv with r, fails the test on an error and
// returns the document with Render's result, checked against it.
func renderResult(t testing.TB, r Renderer, inv Invoice) ([]byte, Result) {
	t.Helper()
	var buf bytes.Buffer
	res, err := r.Render(context.Background(), &buf, inv)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	if res.Bytes != int64(buf.Len()) || res.Pages < 1 {
		t.Fatalf("render result %+v for a document of %d bytes", res, buf.Len())
	}
	return buf.Bytes(), res
}

// pdfText extracts the text of doc with pdftotext -layout; pages > 0
// limits it to that one page.
func pdfText(t testing.TB, doc []byte, page int) string {
	t.Helper()
	bin, err := exec.LookPath("pdftotext")
	if err != nil {
		t.Fatalf("pdftotext not found (install poppler-utils: apt-get install poppler-utils): %v", err)
	}
	in := filepath.Join(t.TempDir(), "invoice.pdf")
	if err := os.WriteFile(in, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-layout", "-enc", "UTF-8"}
	if page > 0 {
		args = append(args, "-f", fmt.Sprint(page), "-l", fmt.Sprint(page))
	}
	out, err := exec.Command(bin, append(args, in, "-")...).CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// pageCount counts the pages of doc with pdftotext's form feeds.
func pageCount(t testing.TB, doc []byte) int {
	t.Helper()
	return strings.Count(pdfText(t, doc, 0), "\f")
}

// squash collapses every run of white space in s to one space.
func squash(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// pathIssuers returns an issuer name for each font path that takes the
// sample invoice (with its customer "Zoë Müller") down that path.
func pathIssuers() []struct {
	issuer string
	path   FontPath
} {
	return []struct {
		issuer string
		path   FontPath
	}{
		{"Acme GmbH", FontPathCP1252},
		{"Łódź Software", FontPathCP1250},
		{"Acme Ωmega Łódź", FontPathUTF8},
		{"Acme " + manyRunes(maxDocumentRunes+1), FontPathUTF8CID},
	}
}
