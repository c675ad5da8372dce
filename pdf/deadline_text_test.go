package pdf

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/go-pdf/fpdf"
)

// TestRenderHonoursDeadlineBeforeFirstPage: before it lays out the first
// page, a render brings the invoice's text into composed form (NFC, for
// decomposed letters). That pass runs over every character the invoice
// holds, which only PostgreSQL's 1 GB array limit bounds (5,000 lines
// of 20 KB of "wörd " took 7 s of it, far more than the 10,000 pages
// can print), and it checked no deadline: a render whose deadline had
// passed went on composing, using the CPU and holding its connection,
// and only the first page noticed. The deadline passes right after the
// render starts here: the render must stop within a small part of the
// text, whether it has combining marks to compose or none.
func TestRenderHonoursDeadlineBeforeFirstPage(t *testing.T) {
	for _, tc := range []struct{ name, word string }{
		{"combining marks", "we\u0301rd "}, // decomposed é
		{"precomposed", "wörd "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := sampleInvoice()
			inv.Lines = manyLines(DefaultMaxLines)
			desc := strings.Repeat(tc.word, 1<<10) // 5-6 KB
			for i := range inv.Lines {
				inv.Lines[i].Description = desc
			}
			text := DefaultMaxLines * len(desc) // about 30 MB
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			// The check before any work passes; every later one fails.
			ctx := &countingContext{Context: context.Background(), after: 1}
			var buf bytes.Buffer
			// Over the default limit on line bytes: a renderer set to take
			// more text, which only the database's 1 GB bounds.
			_, err := Renderer{MaxLineBytes: 1 << 30}.Render(ctx, &buf, inv)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Render = %v, want the deadline", err)
			}
			if buf.Len() != 0 {
				t.Errorf("Render wrote %d bytes", buf.Len())
			}
			n := after.TotalAlloc - before.TotalAlloc
			if bound := uint64(text / 8); n > bound {
				t.Errorf("a render whose deadline passed as it started allocated %d MB for %d MB of text, more than %d MB: it went on after the deadline",
					n>>20, text>>20, bound>>20)
			}
			t.Logf("%d MB allocated for %d MB of text: %v", n>>20, text>>20, err)
		})
	}
}

// TestChooseEncodingHonoursDeadline: choosing the encoding reads every
// character of the invoice too (at 100-150 MB/s where the text is not
// ASCII: seconds for a row near PostgreSQL's limit), so it checks the
// deadline as it reads, in text without a single non-ASCII character, in
// one of many strings and in one long string, and stops within a small
// part of the text once the deadline has passed.
func TestChooseEncodingHonoursDeadline(t *testing.T) {
	long := func(word string) Invoice {
		inv := sampleInvoice()
		inv.Notes = strings.Repeat(word, (32<<20)/len(word))
		return inv
	}
	many := func(word string) Invoice {
		inv := sampleInvoice()
		inv.Lines = manyLines(DefaultMaxLines)
		for i := range inv.Lines {
			inv.Lines[i].Description = strings.Repeat(word, (6<<10)/len(word))
		}
		return inv
	}
	for _, tc := range []struct {
		name string
		inv  Invoice
	}{
		{"one long note, Polish", long("Łódź ")},
		{"one long note, ASCII", long("word ")},
		{"many lines, Greek", many("Ωmega ")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := &countingContext{Context: context.Background(), after: 1}
			enc, _, _, err := chooseEncoding(ctx, tc.inv)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("chooseEncoding chose %v, err %v after the deadline passed, want the deadline", enc != nil, err)
			}
			if calls := ctx.calls.Load(); calls > 2 {
				t.Errorf("chooseEncoding checked its context %d times after it had passed: it went on reading", calls-1)
			}
			// The same invoice with time to spare: the text is read to the end.
			live := &countingContext{Context: context.Background(), after: 1 << 30}
			if _, _, _, err := chooseEncoding(live, tc.inv); err != nil {
				t.Fatal(err)
			}
			if calls := live.calls.Load(); calls < 100 {
				t.Errorf("chooseEncoding checked its context %d times over 30 MB of text", calls)
			}
		})
	}
}

// TestLayoutStopsReadingTextOnceItHasStopped: the layout encodes each text
// of the invoice for its fonts before it wraps it, and a note is text of
// any length (200 MB of "é" took 2.8 s and 320 MB there). It encoded every
// text whole without a look at the deadline, and went on encoding the
// next ones after the layout had stopped (the deadline seen at a page, or
// the page limit): a render whose deadline had passed at its first page
// still read its whole note again before it returned. Here the note is
// 32 MB of Polish: once the layout has stopped, or its deadline passes as
// it encodes the note, the render must stop within a small part of it.
func TestLayoutStopsReadingTextOnceItHasStopped(t *testing.T) {
	inv := sampleInvoice()
	inv.Notes = strings.Repeat("Łódź ", (32<<20)/len("Łódź "))
	text := len(inv.Notes)
	// The checks before the layout: Render's own, then those of
	// composing the text and choosing the encoding, which read it all.
	live := &countingContext{Context: context.Background(), after: 1 << 30}
	composed, err := inv.composed(live)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := chooseEncoding(live, composed); err != nil {
		t.Fatal(err)
	}
	before := 1 + live.calls.Load()
	for _, tc := range []struct {
		name string
		r    Renderer
		inv  Invoice
		// after is how many checks of the context pass.
		after int32
		want  error
	}{
		// The first page's header sees the deadline.
		{"deadline at the first page", Renderer{}, inv, before, context.DeadlineExceeded},
		// The first page is laid out; the deadline passes as the note is read.
		{"deadline in the note", Renderer{}, inv, before + 1, context.DeadlineExceeded},
		// The customer's address takes more than the page limit: the
		// note that follows is never printed.
		{"page limit", Renderer{MaxPages: 2}, func() Invoice {
			inv := inv
			inv.Customer.Address = strings.Repeat("Łódź\n", 200)
			return inv
		}(), 1 << 30, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			ctx := &countingContext{Context: context.Background(), after: tc.after}
			var buf bytes.Buffer
			_, err := tc.r.Render(ctx, &buf, tc.inv)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Render = %v, want %v", err, tc.want)
			}
			// Composing and choosing the encoding read the note without
			// allocating: what was allocated is the layout's.
			n := after.TotalAlloc - before.TotalAlloc
			if bound := uint64(text / 8); n > bound {
				t.Errorf("the render allocated %d MB for a note of %d MB, more than %d MB: the layout read the note after it had stopped",
					n>>20, text>>20, bound>>20)
			}
			t.Logf("%d MB allocated for %d MB of text: %v", n>>20, text>>20, err)
		})
	}
}

// TestLongTextEncodesAsAWhole: text encodes a long text a chunk at a
// time; the chunks end between characters and never inside a \r\n, so
// the result is the whole text's, invalid bytes and line breaks included.
func TestLongTextEncodesAsAWhole(t *testing.T) {
	for _, tc := range []struct {
		enc  *encoding
		text string
	}{
		{encCP1250, "Ł€\r\nź"},
		{encCID, "Ł€\r\n\xffź"}, // a stray byte prints as U+FFFD
	} {
		enc := tc.enc
		d := &document{ctx: context.Background(), f: fpdf.New("P", "mm", "A4", ""), enc: enc}
		for _, pad := range []int{0, 1, 2, 3} {
			// "Ł" (2 bytes), "€" (3 bytes), \r\n and a stray byte
			// straddle a chunk boundary at some padding.
			unit := strings.Repeat("a", pad) + tc.text
			s := strings.Repeat(unit, 3*composeCheckBytes/len(unit)+1)
			want, ok := enc.text(s, true)
			if !ok {
				t.Fatalf("%s: the text has a character the encoding lacks", enc.path)
			}
			if got := d.text(s, true); got != want || d.f.Err() {
				t.Errorf("%s, pad %d: text of %d bytes differs from its encoding as a whole (%v)", enc.path, pad, len(s), d.f.Error())
			}
		}
	}
}
