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
