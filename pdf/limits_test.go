package pdf

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRenderRefusesTooManyLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		r     Renderer
		lines int
		ok    bool
	}{
		{"default limit", Renderer{}, DefaultMaxLines + 1, false},
		{"own limit", Renderer{MaxLines: 20}, 21, false},
		{"at the limit", Renderer{MaxLines: 20}, 20, true},
		{"limit above the default", Renderer{MaxLines: 2 * DefaultMaxLines}, DefaultMaxLines + 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inv := sampleInvoice()
			inv.Lines = manyLines(tt.lines)
			var buf bytes.Buffer
			_, err := tt.r.Render(context.Background(), &buf, inv)
			if tt.ok {
				if err != nil {
					t.Fatalf("Render = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrInvalidInvoice) {
				t.Fatalf("Render = %v, want an error wrapping ErrTooLarge and ErrInvalidInvoice", err)
			}
			if !strings.Contains(err.Error(), "INV-2026-0042") || !strings.Contains(err.Error(), "lines") {
				t.Errorf("error %q does not name the invoice and the line count", err)
			}
			if buf.Len() != 0 {
				t.Errorf("Render wrote %d bytes", buf.Len())
			}
		})
	}
}

func TestRenderRefusesTooLargeDocument(t *testing.T) {
	t.Parallel()
	inv := sampleInvoice()
	inv.Lines = manyLines(300)
	_, res := renderResult(t, Renderer{}, inv)

	for _, limit := range []int64{1000, res.Bytes - 1, 50_000} {
		var buf bytes.Buffer
		_, err := Renderer{MaxBytes: limit}.Render(context.Background(), &buf, inv)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("limit %d: Render = %v, want ErrTooLarge for a %d-byte document", limit, err, res.Bytes)
		}
		if buf.Len() != 0 {
			t.Errorf("limit %d: Render wrote %d bytes", limit, buf.Len())
		}
	}
	if _, err := (Renderer{MaxBytes: res.Bytes}).Render(context.Background(), &bytes.Buffer{}, inv); err != nil {
		t.Errorf("a document of exactly MaxBytes: %v", err)
	}
}

// countingContext reports its error once Err has been called after
// times: a deadline that passes during a render, at a known point.
type countingContext struct {
	context.Context
	after int32
	calls atomic.Int32
}

func (c *countingContext) Err() error {
	if c.calls.Add(1) > c.after {
		return context.DeadlineExceeded
	}
	return nil
}

func TestRenderStopsWhenContextEnds(t *testing.T) {
	t.Parallel()
	inv := sampleInvoice()
	inv.Lines = manyLines(2000) // about 50 pages

	t.Run("done before", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var buf bytes.Buffer
		_, err := Render(ctx, &buf, inv)
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrInvalidInvoice) {
			t.Fatalf("Render = %v, want an error wrapping context.Canceled", err)
		}
		if buf.Len() != 0 {
			t.Errorf("Render wrote %d bytes", buf.Len())
		}
	})

	t.Run("deadline on page 3", func(t *testing.T) {
		t.Parallel()
		// Err is called before the layout and then once per page.
		ctx := &countingContext{Context: context.Background(), after: 3}
		var buf bytes.Buffer
		start := time.Now()
		_, err := Render(ctx, &buf, inv)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Render = %v, want an error wrapping context.DeadlineExceeded", err)
		}
		if buf.Len() != 0 {
			t.Errorf("Render wrote %d bytes", buf.Len())
		}
		if n := ctx.calls.Load(); n > 5 {
			t.Errorf("Err called %d times: the render went on after the deadline", n)
		}
		t.Logf("stopped after %v", time.Since(start))
	})
}

// TestRenderStopsWorkingWhenContextEnds checks that a render whose
// deadline passes on page 2 does a few pages' work, not the whole
// document's: allocations count the work, deterministically.
func TestRenderStopsWorkingWhenContextEnds(t *testing.T) {
	inv := sampleInvoice()
	inv.Lines = manyLines(2000)
	full := testing.AllocsPerRun(1, func() {
		if _, err := Render(context.Background(), &bytes.Buffer{}, inv); err != nil {
			t.Fatal(err)
		}
	})
	stopped := testing.AllocsPerRun(1, func() {
		ctx := &countingContext{Context: context.Background(), after: 2}
		if _, err := Render(ctx, &bytes.Buffer{}, inv); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Render = %v, want the deadline", err)
		}
	})
	if stopped > full/10 {
		t.Errorf("a render stopped on page 2 allocated %.0f times, the whole render %.0f", stopped, full)
	}
}
