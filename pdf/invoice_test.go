package pdf

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/go-pdf/fpdf"
)

func TestRenderRejectsInvalidInvoice(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*Invoice)
	}{
		{"empty number", func(inv *Invoice) { inv.Number = "" }},
		{"blank number", func(inv *Invoice) { inv.Number = "  \t" }},
		{"empty currency", func(inv *Invoice) { inv.Currency = "" }},
		{"lowercase currency", func(inv *Invoice) { inv.Currency = "eur" }},
		{"two letters", func(inv *Invoice) { inv.Currency = "EU" }},
		{"four letters", func(inv *Invoice) { inv.Currency = "EURO" }},
		{"digits", func(inv *Invoice) { inv.Currency = "E1R" }},
		{"non-ASCII letters", func(inv *Invoice) { inv.Currency = "ÉUR" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inv := sampleInvoice()
			tt.modify(&inv)
			var buf bytes.Buffer
			_, err := Render(context.Background(), &buf, inv)
			if !errors.Is(err, ErrInvalidInvoice) {
				t.Fatalf("Render = %v, want an error wrapping ErrInvalidInvoice", err)
			}
			if buf.Len() != 0 {
				t.Errorf("Render wrote %d bytes for an invalid invoice", buf.Len())
			}
		})
	}
}

func TestRenderAcceptsValidCurrencies(t *testing.T) {
	t.Parallel()
	for _, cur := range []string{"EUR", "JPY", "KWD", "XYZ"} {
		inv := sampleInvoice()
		inv.Currency = cur
		if _, err := Render(context.Background(), &bytes.Buffer{}, inv); err != nil {
			t.Errorf("Render with currency %s: %v", cur, err)
		}
	}
}

// failingWriter fails every write.
type failingWriter struct{}

var errDiskFull = errors.New("disk full")

func (failingWriter) Write([]byte) (int, error) { return 0, errDiskFull }

func TestRenderReturnsWriterError(t *testing.T) {
	t.Parallel()
	_, err := Render(context.Background(), failingWriter{}, sampleInvoice())
	if !errors.Is(err, errDiskFull) {
		t.Fatalf("Render = %v, want an error wrapping the writer's error", err)
	}
	if errors.Is(err, ErrInvalidInvoice) {
		t.Errorf("a writer error must not look like an invalid invoice: %v", err)
	}
}

func TestRenderReturnsFpdfError(t *testing.T) {
	t.Parallel()
	// A document without the embedded fonts: fpdf fails on the first
	// SetFont, and that error must come back instead of a broken PDF.
	f := fpdf.New("P", "mm", "A4", "")
	var buf bytes.Buffer
	inv := sampleInvoice()
	enc, _, _, _ := chooseEncoding(context.Background(), inv)
	_, err := output(context.Background(), &buf, f, inv, enc, &docFonts{}, DefaultMaxBytes, DefaultMaxPages)
	if err == nil || !strings.Contains(err.Error(), "undefined font") {
		t.Fatalf("output = %v, want fpdf's undefined font error", err)
	}
	if !strings.Contains(err.Error(), "INV-2026-0042") {
		t.Errorf("error %q does not name the invoice", err)
	}
	if buf.Len() != 0 {
		t.Errorf("output wrote %d bytes after an fpdf error", buf.Len())
	}
}
