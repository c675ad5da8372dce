package pdf

import (
	"runtime"
	"strings"
	"testing"
)

// TestInputsHashDoesNotCopyTheText: the worker hashes every invoice it
// loads, however much text its lines, address and notes hold (the page
// limit bounds what a render reads of it, not what a load brings). Each
// text was copied whole to be hashed ([]byte(s) through the hash's
// interface), so an invoice of 300 MB of descriptions allocated another
// 300 MB for its hash alone. Text is hashed through a fixed buffer.
func TestInputsHashDoesNotCopyTheText(t *testing.T) {
	inv := sampleInvoice()
	inv.Customer.Address = strings.Repeat("Street 1\n", 1<<20)
	inv.Notes = strings.Repeat("n", 8<<20)
	inv.Lines = manyLines(64)
	for i := range inv.Lines {
		inv.Lines[i].Description = strings.Repeat("d", 1<<20)
	}
	want := InputsHash(Renderer{}, inv)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	got := InputsHash(Renderer{}, inv)
	runtime.ReadMemStats(&after)
	if got != want {
		t.Fatalf("InputsHash = %s, then %s", want, got)
	}
	const bound = 1 << 20
	if n := after.TotalAlloc - before.TotalAlloc; n > bound {
		t.Errorf("InputsHash of an invoice of %d MB of text allocated %d MB, more than %d MB",
			(len(inv.Customer.Address)+len(inv.Notes)+64<<20)>>20, n>>20, bound>>20)
	}
}
