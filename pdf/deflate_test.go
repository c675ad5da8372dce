package pdf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"testing"

	"github.com/go-pdf/fpdf"
)

// plainPDF returns a document as fpdf writes it with compression off:
// pages of text in a core font, and an image-free resource dictionary.
func plainPDF(t *testing.T, pages int) []byte {
	t.Helper()
	f := fpdf.New("P", "mm", "A4", "")
	f.SetCompression(false)
	f.SetCatalogSort(true)
	f.SetFont("Helvetica", "", 12)
	for p := range pages {
		f.AddPage()
		for l := range 40 {
			f.CellFormat(0, 6, fmt.Sprintf("Page %d line %d (with parentheses) and a backslash \\", p+1, l+1), "", 1, "L", false, 0, "")
		}
	}
	var buf bytes.Buffer
	if err := f.Output(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDeflateStreams(t *testing.T) {
	t.Parallel()
	plain := plainPDF(t, 3)
	var out bytes.Buffer
	if err := deflateStreams(context.Background(), &out, plain, 1<<20); err != nil {
		t.Fatal(err)
	}
	doc := out.Bytes()
	if len(doc) >= len(plain)/2 {
		t.Errorf("deflated document is %d bytes, the plain one %d", len(doc), len(plain))
	}

	// The new cross-reference table points at every object.
	x, err := readXref(doc)
	if err != nil {
		t.Fatalf("read xref: %v", err)
	}
	for n := 1; n < len(x.offsets); n++ {
		if want := strconv.Itoa(n) + " 0 obj\n"; !bytes.HasPrefix(doc[x.offsets[n]:], []byte(want)) {
			t.Errorf("xref entry %d points at %q", n, doc[x.offsets[n]:x.offsets[n]+12])
		}
	}

	// Each page's stream inflates to the plain document's.
	px, err := readXref(plain)
	if err != nil {
		t.Fatal(err)
	}
	streams := 0
	for n := 1; n < len(x.offsets); n++ {
		orig, ok := objectAt(plain, px, n)
		if !ok {
			t.Fatalf("object %d missing", n)
		}
		got, _ := objectAt(doc, x, n)
		data, isStream := plainStream(orig, n)
		if !isStream {
			if !bytes.Equal(got, orig) {
				t.Errorf("object %d changed:\n%s\n---\n%s", n, orig, got)
			}
			continue
		}
		streams++
		m := regexp.MustCompile(`^\d+ 0 obj\n<</Filter /FlateDecode /Length (\d+)>>\nstream\n`).FindSubmatch(got)
		if m == nil {
			t.Fatalf("object %d is not a deflated stream: %.60q", n, got)
		}
		length, _ := strconv.Atoi(string(m[1]))
		z := got[len(m[0]):]
		if want := "\nendstream\nendobj\n"; len(z) != length+len(want) || string(z[length:]) != want {
			t.Fatalf("object %d: /Length %d does not end at endstream", n, length)
		}
		if inflated := decompress(t, z[:length]); !bytes.Equal(inflated, data) {
			t.Errorf("object %d inflates to other data", n)
		}
	}
	if streams != 3 {
		t.Errorf("%d streams deflated, want the 3 pages", streams)
	}
	if plainText, text := pdfText(t, plain, 0), pdfText(t, doc, 0); plainText != text {
		t.Errorf("text differs after deflating:\n%s\n---\n%s", plainText, text)
	}
}

// objectAt returns the text of object n of doc, up to the next object.
func objectAt(doc []byte, x xrefTable, n int) ([]byte, bool) {
	if n >= len(x.offsets) {
		return nil, false
	}
	end := x.start
	for _, off := range x.offsets[1:] {
		if off > x.offsets[n] && off < end {
			end = off
		}
	}
	return doc[x.offsets[n]:end], true
}

func TestDeflateStreamsRefuses(t *testing.T) {
	t.Parallel()
	plain := plainPDF(t, 2)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name     string
		ctx      context.Context
		doc      []byte
		maxBytes int64
		want     error
	}{
		{"too large", context.Background(), plain, 2000, ErrTooLarge},
		{"canceled", canceled, plain, 1 << 20, context.Canceled},
		{"truncated", context.Background(), plain[:len(plain)-40], 1 << 20, errLayout},
		{"no xref", context.Background(), bytes.Replace(plain, []byte("xref\n0 "), []byte("xref\n0x"), 1), 1 << 20, errLayout},
		{"bad offset", context.Background(), bytes.Replace(plain, []byte(" 00000 n \n"), []byte(" 00000 f \n"), 1), 1 << 20, errLayout},
		{"not a pdf", context.Background(), []byte("hello"), 1 << 20, errLayout},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		if err := deflateStreams(tt.ctx, &out, tt.doc, tt.maxBytes); !errors.Is(err, tt.want) {
			t.Errorf("%s: deflateStreams = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestCompressToDoesNotDependOnPool(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte("BT 42.52 734.17 Td (Consulting) Tj ET\n"), 300)
	var first, other, again bytes.Buffer
	if err := compressTo(&first, data); err != nil {
		t.Fatal(err)
	}
	// A pooled writer that compressed other data gives the same bytes.
	for range 3 {
		if err := compressTo(&other, bytes.Repeat([]byte("0123456789 Łódź "), 5000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := compressTo(&again, data); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Bytes(), again.Bytes()) {
		t.Error("compressing the same data twice gave different bytes")
	}
	if !bytes.Equal(decompress(t, first.Bytes()), data) {
		t.Error("compressed data does not inflate to the original")
	}
}

func TestDeflateWriter(t *testing.T) {
	t.Parallel()
	plain := plainPDF(t, 2)
	var want bytes.Buffer
	if err := deflateStreams(context.Background(), &want, plain, 1<<20); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{len(plain), 1000, 1} {
		var got bytes.Buffer
		w := &deflateWriter{ctx: context.Background(), dst: &got, maxBytes: 1 << 20}
		for rest := plain; len(rest) > 0; rest = rest[min(size, len(rest)):] {
			if _, err := w.Write(rest[:min(size, len(rest))]); err != nil {
				t.Fatalf("writes of %d bytes: %v", size, err)
			}
		}
		if err := w.flush(); err != nil {
			t.Fatalf("writes of %d bytes: flush: %v", size, err)
		}
		w.release()
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Errorf("writes of %d bytes: output differs from deflateStreams'", size)
		}
	}
	w := &deflateWriter{ctx: context.Background(), dst: &bytes.Buffer{}, maxBytes: 1 << 20}
	if err := w.flush(); !errors.Is(err, errLayout) {
		t.Errorf("flush of nothing = %v, want errLayout", err)
	}
}
