package pdf

import (
	"context"
	"fmt"
	"io"
	"testing"
)

// BenchmarkRender renders invoices of 10 and 200 lines down each font
// path; pdf-bytes is the size of the document.
func BenchmarkRender(b *testing.B) {
	for _, lines := range []int{10, 200} {
		for _, tt := range pathIssuers() {
			inv := sampleInvoice()
			inv.TenantName = tt.issuer
			inv.Lines = manyLines(lines)
			b.Run(fmt.Sprintf("%s/%d", tt.path, lines), func(b *testing.B) {
				b.ReportAllocs()
				var res Result
				for b.Loop() {
					var err error
					if res, err = Render(context.Background(), io.Discard, inv); err != nil {
						b.Fatal(err)
					}
				}
				if res.FontPath != tt.path {
					b.Fatalf("font path %s, want %s", res.FontPath, tt.path)
				}
				b.ReportMetric(float64(res.Bytes), "pdf-bytes")
			})
		}
	}
}
