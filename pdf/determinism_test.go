package pdf

import (
	"bytes"
	"context"
	"crypto/sha256"
	"sync"
	"testing"
	"time"
)

func TestRenderIsDeterministic(t *testing.T) {
	t.Parallel()
	big := sampleInvoice()
	big.Lines = manyLines(120)
	undated := sampleInvoice()
	undated.IssuedAt, undated.DueAt = time.Time{}, time.Time{}

	tests := []struct {
		name string
		r    Renderer
		inv  Invoice
	}{
		{"sample", Renderer{}, sampleInvoice()},
		{"cp1252", Renderer{}, invoiceWith("Acme GmbH", "Zoë Müller", "Größe XL")},
		{"cp1250", Renderer{}, invoiceWith("Łódź sp. z o.o.", "Zoë Müller", "Usługa")},
		{"utf8-cid", Renderer{}, invoiceWith("Acme", manyRunes(maxDocumentRunes+1), "ООО")},
		{"several pages", Renderer{}, big},
		{"no dates", Renderer{}, undated},
		{"fixed creation date", Renderer{CreatedAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}, sampleInvoice()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want := sha256.Sum256(render(t, tt.r, tt.inv))
			if got := sha256.Sum256(render(t, tt.r, tt.inv)); got != want {
				t.Fatalf("second render differs: %x != %x", got, want)
			}

			const workers = 8
			sums := make([][32]byte, workers)
			var wg sync.WaitGroup
			for i := range workers {
				wg.Go(func() {
					var buf bytes.Buffer
					if _, err := tt.r.Render(context.Background(), &buf, tt.inv); err != nil {
						t.Errorf("concurrent render %d: %v", i, err)
						return
					}
					sums[i] = sha256.Sum256(buf.Bytes())
				})
			}
			wg.Wait()
			for i, got := range sums {
				if got != want {
					t.Errorf("concurrent render %d differs: %x != %x", i, got, want)
				}
			}
		})
	}
}

func TestRenderCreationDate(t *testing.T) {
	t.Parallel()
	undated := sampleInvoice()
	undated.IssuedAt = time.Time{}
	cet := time.FixedZone("CET", 3600)

	tests := []struct {
		name string
		r    Renderer
		inv  Invoice
		want string
	}{
		{"issue date", Renderer{}, sampleInvoice(), "D:20260301093000"},
		{"renderer's date wins", Renderer{CreatedAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}, sampleInvoice(), "D:20300102030405"},
		{"written in UTC", Renderer{CreatedAt: time.Date(2030, 1, 2, 3, 4, 5, 0, cet)}, sampleInvoice(), "D:20300102020405"},
		{"fallback, never the clock", Renderer{}, undated, "D:20000101000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc := render(t, tt.r, tt.inv)
			for _, key := range []string{"/CreationDate (", "/ModDate ("} {
				if !bytes.Contains(doc, []byte(key+tt.want+")")) {
					t.Errorf("document lacks %s%s)", key, tt.want)
				}
			}
		})
	}
}
