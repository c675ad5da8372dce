package tasks

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// TestTaskIDWritesEachPartAsPrintV: taskID builds ids without fmt for the
// part types the payloads use (strings and int64s) and must write every
// part exactly as fmt's %v does, as ids always were: an id is how a
// repeated request finds its task, so a changed digit would make a second
// task for the same invoice.
func TestTaskIDWritesEachPartAsPrintV(t *testing.T) {
	type day string
	cases := [][]any{
		{"tn_abc", int64(42)},
		{"tn_abc", int64(-7), "2026-12-06"},
		{int64(0)},
		{int64(math.MaxInt64), int64(math.MinInt64)},
		{"", ""},
		{"tn_ünïcode", int64(1e15)},
		{7, uint8(3), day("2026-12-06"), time.Duration(1500) * time.Millisecond, true, 2.5},
	}
	for _, parts := range cases {
		want := "invoice:pdf"
		for _, p := range parts {
			want += fmt.Sprintf(":%v", p)
		}
		if got := taskID("invoice:pdf", parts...); got != want {
			t.Errorf("taskID(%#v) = %q, want %q", parts, got, want)
		}
	}
	if got := (InvoicePDF{TenantID: "tn_x", InvoiceID: 12}).Spec().TaskID; got != "invoice:pdf:tn_x:12" {
		t.Errorf("InvoicePDF task id %q, want invoice:pdf:tn_x:12", got)
	}
}
