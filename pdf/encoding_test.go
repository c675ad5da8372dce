package pdf

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-pdf/fpdf"
)

func TestCodePagesMatchFpdf(t *testing.T) {
	t.Parallel()
	for _, enc := range []*encoding{encCP1252, encCP1250} {
		tr := fpdf.New("P", "mm", "A4", "").UnicodeTranslatorFromDescriptor(string(enc.path))
		// Every rune fpdf's map translates, to the same code, and no more.
		n := 0
		for r := rune(0x80); r < 0x3000; r++ {
			got := tr(string(r))
			code, ok := enc.codes[r]
			switch {
			case got == ".":
				if ok {
					t.Errorf("%s: %U at %#x, fpdf's map lacks it", enc.path, r, code)
				}
			case !ok:
				t.Errorf("%s: lacks %U, fpdf's map has it at %#x", enc.path, r, got[0])
			case got != string([]byte{code}):
				t.Errorf("%s: %U at %#x, fpdf's map has it at %#x", enc.path, r, code, got[0])
			default:
				n++
			}
		}
		if n != len(enc.codes) || len(enc.extra) != n {
			t.Errorf("%s: %d runes match fpdf's map, the encoding has %d", enc.path, n, len(enc.codes))
		}
	}
}

// invoiceWith returns the sample invoice with the issuer, customer name
// and the description of every line replaced.
func invoiceWith(tenant, customer, description string) Invoice {
	inv := sampleInvoice()
	inv.TenantName = tenant
	inv.Customer = Customer{Name: customer, Company: "Example Ltd", Address: "1 Main St"}
	inv.Notes = "Thank you."
	for i := range inv.Lines {
		inv.Lines[i].Description = description
	}
	return inv
}

// manyRunes returns a string of n distinct Greek and Cyrillic letters and
// symbols, more than a document encoding holds when n > maxDocumentRunes.
func manyRunes(n int) string {
	var b strings.Builder
	for r := rune(0x0391); b.Len() < 4*n && utf8.RuneCountInString(b.String()) < n; r++ {
		if r == 0x03A2 || r > 0x03C9 && r < 0x0410 {
			continue // not a letter
		}
		b.WriteRune(r)
	}
	return b.String()
}

func TestChooseEncoding(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		inv  Invoice
		want FontPath
	}{
		{"ASCII", invoiceWith("Acme Inc", "John Smith", "Consulting"), FontPathCP1252},
		{"German", invoiceWith("Acme GmbH", "Zoë Müller", "Größe XL – 5 €"), FontPathCP1252},
		{"French and Nordic", invoiceWith("Ærøskøbing ApS", "Œuvre Café", "naïve façade"), FontPathCP1252},
		{"Polish", invoiceWith("Łódź Software sp. z o.o.", "Paweł Żak", "Usługa"), FontPathCP1250},
		{"Polish and German", invoiceWith("Łódź Software", "Zoë Müller", "Größe – 5 €"), FontPathCP1250},
		{"Czech and Hungarian", invoiceWith("Příliš žluťoučký kůň", "Árvíztűrő tükörfúrógép", "x"), FontPathCP1250},
		{"Polish and Danish", invoiceWith("Łódź", "Ærøskøbing", "x"), FontPathUTF8},
		{"Romanian comma below", invoiceWith("Acme", "Ștefan Țară", "x"), FontPathUTF8},
		{"Greek", invoiceWith("Acme", "Αλέξης Παπαδόπουλος", "x"), FontPathUTF8},
		{"Cyrillic", invoiceWith("Acme", "ООО Ромашка", "x"), FontPathUTF8},
		{"Greek, Cyrillic, Polish", invoiceWith("Acme Ωmega Łódź", "Αλέξης", "Лицензия"), FontPathUTF8},
		{"emoji becomes U+FFFD", invoiceWith("Party 🎉 GmbH", "Zoë", "x"), FontPathUTF8},
		{"control character becomes U+FFFD", invoiceWith("Acme\x07", "Zoë", "x"), FontPathUTF8},
		{"only in the notes", func() Invoice {
			inv := invoiceWith("Acme", "John", "x")
			inv.Notes = "Спасибо"
			return inv
		}(), FontPathUTF8},
		{"only in a late line", func() Invoice {
			inv := invoiceWith("Acme", "John", "x")
			inv.Lines = append(inv.Lines, Line{Description: "Łódź", Quantity: dec("1"), UnitPrice: dec("1")})
			return inv
		}(), FontPathCP1250},
		{"as many characters as fit", invoiceWith("Acme", manyRunes(maxDocumentRunes), "x"), FontPathUTF8},
		{"more characters than fit", invoiceWith("Acme", manyRunes(maxDocumentRunes+1), "x"), FontPathUTF8CID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			enc, _, _, _ := chooseEncoding(context.Background(), tt.inv)
			if enc.path != tt.want {
				t.Fatalf("path %s, want %s", enc.path, tt.want)
			}
			// Every text the document prints encodes, none loses a
			// character: decoding gives back the cleaned text.
			c := tt.inv.Customer
			texts := []string{tt.inv.TenantName, tt.inv.Number, tt.inv.Status, c.Name, c.Company, c.Address, tt.inv.Notes}
			for _, l := range tt.inv.Lines {
				texts = append(texts, l.Description)
			}
			for _, s := range texts {
				got, ok := enc.text(s, true)
				if !ok {
					t.Fatalf("%q does not encode in %s", s, enc.path)
				}
				if dec := enc.decode(got); dec != cleanText(s, true) {
					t.Errorf("%q encodes to %q, which decodes to %q", s, got, dec)
				}
			}
		})
	}
}

// decode reverses text.
func (e *encoding) decode(s string) string {
	if e.codes == nil {
		return s
	}
	var b strings.Builder
	for i := range len(s) {
		if c := s[i]; c < 0x20 {
			b.WriteByte(c) // a line break
		} else if r := e.runes[c]; r != 0 {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, "<undefined %#x>", c)
		}
	}
	return b.String()
}

func TestDocumentEncoding(t *testing.T) {
	t.Parallel()
	enc := documentEncoding([]rune("ΑΩЖ€"))
	for _, tt := range []struct {
		in, want string
	}{
		{"Page 1 of {nb}", "Page 1 of {nb}"}, // ASCII keeps its codes
		{"ΑΩ", "\x7F\x80"},
		{"Ж€", "\x81\x82"},
		{"a\r\nb", "a\nb"},
	} {
		got, ok := enc.text(tt.in, true)
		if !ok || got != tt.want {
			t.Errorf("text(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
	if _, ok := enc.text("Ł", false); ok {
		t.Error("a rune the encoding lacks encoded")
	}
}

func FuzzEncodingText(f *testing.F) {
	for _, s := range []string{"Zoë Müller", "Łódź", "Ωmega", "Ærø Łódź", "a\r\nb\tc\x00", "🎉\xff", manyRunes(140)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		inv := invoiceWith("Acme", s, "x")
		enc, _, _, _ := chooseEncoding(context.Background(), inv)
		for _, multiline := range []bool{false, true} {
			got, ok := enc.text(s, multiline)
			if !ok {
				t.Fatalf("%q does not encode in the %s encoding chosen for it", s, enc.path)
			}
			if dec, want := enc.decode(got), cleanText(s, multiline); dec != want {
				t.Fatalf("%q: %s text %q decodes to %q, want %q", s, enc.path, got, dec, want)
			}
			if enc.codes != nil && strings.ContainsAny(got, "\r\t") {
				t.Fatalf("%q: %q keeps a tab or carriage return", s, got)
			}
		}
	})
}

// TestPageCountAliasNeverMatchesText: fpdf replaces the page-count alias
// in every page's content, text included. On the utf8-cid path that text
// is UTF-16BE, whose bytes held the alias of old ("\x01nb\x01") for text
// such as "Ů戁" (U+016E U+6201) or, at an odd offset, "丁湢ǎ": the page
// count went into the middle of the string and the rest of it was read a
// byte off. Such text now extracts as written.
func TestPageCountAliasNeverMatchesText(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"Kůň Ů戁 end", "丁湢ǎ Zoë", "\u0100\u0100 \u4e00\u0100\u0100"} {
		inv := invoiceWith("Acme "+manyRunes(maxDocumentRunes+1), "Zoe", s)
		doc, res := renderResult(t, Renderer{}, inv)
		if res.FontPath != FontPathUTF8CID {
			t.Fatalf("font path %s, want %s", res.FontPath, FontPathUTF8CID)
		}
		if text := pdfText(t, doc, 0); !strings.Contains(text, s) || !strings.Contains(text, "Page 1 of 1") {
			t.Errorf("PDF text lacks %q or its page count:\n%s", s, text)
		}
	}
}
