package pdf

import (
	"context"
	"io"
	"testing"
)

func benchmarkRender(b *testing.B, lines int) {
	inv := sampleInvoice()
	inv.Lines = manyLines(lines)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Render(context.Background(), io.Discard, inv); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRender10Lines(b *testing.B)  { benchmarkRender(b, 10) }
func BenchmarkRender200Lines(b *testing.B) { benchmarkRender(b, 200) }
