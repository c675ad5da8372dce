package worker_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/tasks"
)

// TestInvoicePDFAmountNotItsLinesSumDiffers: an invoice whose stored
// amount is not the sum of its lines (the app wrote both) prints the
// lines' sum, so the result says "amount_differs" and a warning names
// tenant, invoice and both figures; an amount that is its lines' sum,
// also one the column rounded (KWD 0.125 stored 0.13), does not differ.
func TestInvoicePDFAmountNotItsLinesSumDiffers(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme")
	for i, tc := range []struct {
		currency, amount string
		lines            []invoice.Line
		differs          bool
	}{
		{"EUR", "100.00", []invoice.Line{line("Service", "1", "90.00")}, true},
		{"EUR", "89.99", []invoice.Line{line("Service", "2", "45.00")}, true},
		{"EUR", "90.00", []invoice.Line{line("Service", "2", "45.00")}, false},
		{"KWD", "0.13", []invoice.Line{line("Service", "0.5", "0.25")}, false},
	} {
		id := e.addInvoice(t, acme, invoice.Customer{Name: "Zoë", Email: fmt.Sprintf("l%d@example.org", i)}, invoice.New{
			Number: fmt.Sprintf("LS-%d", i), Currency: tc.currency, Lines: tc.lines,
			Amount: decimal.NewNullDecimal(decimal.RequireFromString(tc.amount)),
		})
		var logs bytes.Buffer
		w := workertest.New(e.h, worker.MuxOptions{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
		var res bytes.Buffer
		if err := w.Work(worker.RecordResults(e.ctx, &res), tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(res.String(), `"amount_differs":true`); got != tc.differs {
			t.Errorf("%s %s with lines %v: result %s, amount_differs %v, want %v", tc.currency, tc.amount, tc.lines, res.String(), got, tc.differs)
		}
		var warned bool
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `"level":"WARN"`) && strings.Contains(l, `"amount":"`) && strings.Contains(l, `"lines_total":"`) &&
				strings.Contains(l, `"tenant_id":"`+acme.ID+`"`) && strings.Contains(l, fmt.Sprintf(`"invoice_id":%d`, id)) {
				warned = true
			}
		}
		if warned != tc.differs {
			t.Errorf("%s %s with lines: warned %v, want %v:\n%s", tc.currency, tc.amount, warned, tc.differs, logs.String())
		}
	}
}
