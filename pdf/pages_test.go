package pdf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

// TestHostileAddressStopsAtPageLimit: a customer address is text of any
// length, and a short line of it takes a whole line of a page: 10 MB of
// "a\n" laid out 97,091 pages, and fpdf keeps every page in memory until
// it writes the document, so the render took 1.46 GB of heap (3.5 GB
// allocated) before PDF_MAX_BYTES refused the document at the end. The
// layout stops at the page limit instead, on the single-byte and the
// UTF-8 font paths: the render of 4 MB of it allocated 1,308 MB and 2,141
// MB (38,837 pages), now about 200 MB and 310 MB, less than the largest
// legitimate invoice (TestLargestInvoiceFitsDefaultPageLimit).
func TestHostileAddressStopsAtPageLimit(t *testing.T) {
	for _, p := range []struct {
		issuer string
		path   FontPath
	}{pathIssuers()[0], pathIssuers()[3]} {
		t.Run(string(p.path), func(t *testing.T) {
			inv := sampleInvoice()
			inv.TenantName = p.issuer
			inv.Lines = manyLines(3)
			inv.Customer.Address = strings.Repeat("a\n", 2<<20) // 4 MB, some 40,000 pages
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			var buf bytes.Buffer
			res, err := Render(context.Background(), &buf, inv)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(fmtErr(err), "pages") {
				t.Errorf("Render = %v (%d pages, %d bytes), want ErrTooLarge for too many pages", err, res.Pages, res.Bytes)
			}
			if res.FontPath != p.path {
				t.Errorf("font path %s, want %s", res.FontPath, p.path)
			}
			if buf.Len() != 0 {
				t.Errorf("Render wrote %d bytes", buf.Len())
			}
			// About 200 MB and 310 MB, 310 MB and 510 MB with the race
			// detector: the bound holds for both builds, and a render of
			// the whole address (1.3 GB and more) fails it.
			const bound = 640 << 20
			n := after.TotalAlloc - before.TotalAlloc
			if n > bound {
				t.Errorf("the render of a 4 MB address allocated %d MB, more than %d MB (%d pages)", n>>20, bound>>20, res.Pages)
			}
			t.Logf("%d pages, %d MB allocated: %v", res.Pages, n>>20, err)
		})
	}
}

// fmtErr is err's message, or "" for nil.
func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestRenderPageLimit: a document of exactly MaxPages pages renders as it
// does without a limit; one more page, whether the table or a paragraph
// takes it, is refused with ErrTooLarge, naming the limit, and nothing is
// written.
func TestRenderPageLimit(t *testing.T) {
	t.Parallel()
	for _, p := range pathIssuers() {
		t.Run(string(p.path), func(t *testing.T) {
			t.Parallel()
			table := sampleInvoice()
			table.TenantName = p.issuer
			table.Lines = manyLines(200)
			address := sampleInvoice()
			address.TenantName = p.issuer
			address.Lines = manyLines(3)
			// 150 lines of address: the details block runs onto page 3.
			address.Customer.Address = strings.Repeat("Hauptstraße 1\n", 150)
			for _, inv := range []Invoice{table, address} {
				want, res := renderResult(t, Renderer{}, inv)
				if res.FontPath != p.path || res.Pages < 3 {
					t.Fatalf("%+v, want a document of 3 pages or more on %s", res, p.path)
				}
				if got := render(t, Renderer{MaxPages: res.Pages}, inv); !bytes.Equal(got, want) {
					t.Errorf("at the limit of %d pages the document differs", res.Pages)
				}
				for _, limit := range []int{res.Pages - 1, 1} {
					var buf bytes.Buffer
					_, err := Renderer{MaxPages: limit}.Render(context.Background(), &buf, inv)
					if !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrInvalidInvoice) ||
						!strings.Contains(fmtErr(err), fmt.Sprintf("more than %d pages", limit)) || !strings.Contains(fmtErr(err), inv.Number) {
						t.Errorf("%d pages, limit %d: Render = %v, want ErrTooLarge naming the invoice and the limit", res.Pages, limit, err)
					}
					if buf.Len() != 0 {
						t.Errorf("limit %d: Render wrote %d bytes", limit, buf.Len())
					}
				}
			}
		})
	}
}

// TestLargestInvoiceFitsDefaultPageLimit: the largest legitimate invoice,
// DefaultMaxLines lines with 2 KB descriptions of wide letters (every row
// taller than a page), renders with the default limits: 6,633 pages (the
// same on every font path; other wide words took 6,155, prose 5,000, and
// 1 KB descriptions 2,500 to 5,000). DefaultMaxPages leaves a third more
// room at least.
func TestLargestInvoiceFitsDefaultPageLimit(t *testing.T) {
	inv := sampleInvoice()
	inv.TenantName = "Acme GmbH"
	inv.Lines = manyLines(DefaultMaxLines)
	desc := strings.Repeat("WWWW MMMM ", 2048/10)
	for i := range inv.Lines {
		inv.Lines[i].Description = desc
	}
	res, err := Render(context.Background(), io.Discard, inv)
	if err != nil {
		t.Fatalf("Render = %v (%d pages)", err, res.Pages)
	}
	if res.Pages < DefaultMaxLines || 4*res.Pages > 3*DefaultMaxPages {
		t.Errorf("%d pages: the largest invoice should take more pages than lines, and the default limit of %d a third more", res.Pages, DefaultMaxPages)
	}
	t.Logf("%d pages, %d bytes", res.Pages, res.Bytes)
}
