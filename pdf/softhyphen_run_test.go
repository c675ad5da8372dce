package pdf

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestSoftHyphenRunWrapsInLinearTime: deciding whether a soft hyphen is a
// break point looked back over every soft hyphen before it on the line,
// so a run of them (text pasted from a hyphenating editor, or hostile)
// made the wrap quadratic in the run's length: 40,000 of them, 80 KB of
// notes, took 17 s, and 100,000 two minutes, all inside one wrap that
// checks no deadline, so the task's deadline did not stop it either. The
// wrap must stay linear on every font path.
func TestSoftHyphenRunWrapsInLinearTime(t *testing.T) {
	run := "x" + strings.Repeat("\u00AD", 100_000)
	for _, tt := range pathIssuers() {
		t.Run(string(tt.path), func(t *testing.T) {
			inv := sampleInvoice()
			inv.TenantName = tt.issuer
			inv.Notes = run
			for i := range inv.Lines {
				inv.Lines[i].Description = run
			}
			type rendered struct {
				res Result
				err error
			}
			done := make(chan rendered, 1) // the render may outlive a failed test
			start := time.Now()
			go func() {
				res, err := Render(context.Background(), &bytes.Buffer{}, inv)
				done <- rendered{res, err}
			}()
			select {
			case r := <-done:
				if r.err != nil {
					t.Fatal(r.err)
				}
				if r.res.FontPath != tt.path {
					t.Errorf("font path %s, want %s", r.res.FontPath, tt.path)
				}
				t.Logf("rendered in %v", time.Since(start))
			case <-time.After(5 * time.Second):
				t.Fatalf("a render with a run of %d soft hyphens took more than 5 s: the wrap is not linear", strings.Count(run, "\u00AD"))
			}
		})
	}
}
