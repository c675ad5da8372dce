package pdf

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
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
			_, err := Render(ctx, &buf, inv)
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
			enc, _, err := chooseEncoding(ctx, tc.inv)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("chooseEncoding chose %v, err %v after the deadline passed, want the deadline", enc != nil, err)
			}
			if calls := ctx.calls.Load(); calls > 2 {
				t.Errorf("chooseEncoding checked its context %d times after it had passed: it went on reading", calls-1)
			}
			// The same invoice with time to spare: the text is read to the end.
			live := &countingContext{Context: context.Background(), after: 1 << 30}
			if _, _, err := chooseEncoding(live, tc.inv); err != nil {
				t.Fatal(err)
			}
			if calls := live.calls.Load(); calls < 100 {
				t.Errorf("chooseEncoding checked its context %d times over 30 MB of text", calls)
			}
		})
	}
}
