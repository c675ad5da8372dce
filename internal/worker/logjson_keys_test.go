package worker_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/tasks"
)

// duplicateKeys returns the top-level keys that the JSON object line names
// more than once.
func duplicateKeys(t *testing.T, line string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %s", line)
	}
	seen := map[string]bool{}
	var dup []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		k := tok.(string)
		if seen[k] {
			dup = append(dup, k)
		}
		seen[k] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
	}
	return dup
}

// TestInvoicePDFWarningsNameEachKeyOnce: the render's warnings (the amount
// differs from its lines, characters the fonts lack) are JSON objects with
// each key once with LOG_FORMAT=json: a line with "tenant_id" twice is
// refused by log pipelines that reject duplicate keys (Elasticsearch:
// "Duplicate field") and kept as either value by others.
func TestInvoicePDFWarningsNameEachKeyOnce(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme")
	inv := acmeInvoice
	inv.Amount = decimal.NewNullDecimal(decimal.RequireFromString("1000.00"))
	id := e.addInvoice(t, acme, invoice.Customer{Name: "山田 Zoë", Email: "y@x"}, inv)
	var logs bytes.Buffer
	w := workertest.New(e.h, worker.MuxOptions{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err := w.Work(e.ctx, tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}); err != nil {
		t.Fatal(err)
	}
	warnings := 0
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(l, `"level":"WARN"`) {
			warnings++
		}
		if dup := duplicateKeys(t, l); len(dup) > 0 {
			t.Errorf("log line names %v twice:\n%s", dup, l)
		}
	}
	if warnings < 2 {
		t.Errorf("%d warnings, want the amount's and the glyphs':\n%s", warnings, logs.String())
	}
}
