package pdf

import (
	"bytes"
	"testing"
	"time"
)

// TestInputsHashIgnoresWhatIsNotPrinted: InputsHash promises "equal
// hashes mean equal documents" and is meant to cover what the document
// shows. The due date prints as a date and the issue date as a date and a
// creation date to the second, but the hash takes both to the nanosecond:
// an edit of the due date's time of day (or of the issue time's
// microseconds, which PostgreSQL keeps) re-renders a document that comes
// out byte for byte the same.
func TestInputsHashIgnoresWhatIsNotPrinted(t *testing.T) {
	for name, change := range map[string]func(*Invoice){
		"due time of day":   func(i *Invoice) { i.DueAt = i.DueAt.Add(9*time.Hour + 15*time.Minute) },
		"issued sub-second": func(i *Invoice) { i.IssuedAt = i.IssuedAt.Add(123456 * time.Microsecond) },
	} {
		a, b := sampleInvoice(), sampleInvoice()
		change(&b)
		if !bytes.Equal(render(t, Renderer{}, a), render(t, Renderer{}, b)) {
			t.Fatalf("%s: the documents differ; this test expects them equal", name)
		}
		if InputsHash(Renderer{}, a) != InputsHash(Renderer{}, b) {
			t.Errorf("%s: same document, different inputs hash: the stored document is rendered again for nothing", name)
		}
	}
}
