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

// TestInvoicePDFAmountFinerThanItsCurrencyDiffers: an invoice without
// lines prints its stored amount in its currency's minor units. A yen
// amount of 1234.50 (the numeric(12,2) column takes it; an app that
// computes tax on yen writes such amounts) prints as JPY 1,235, and the
// reminder asks for JPY 1,235: the document shows another figure than the
// app holds, as when the stored amount is not its lines' sum, so the
// result says "amount_differs" and a warning names tenant, invoice and
// both figures. An amount the currency holds exactly (JPY 1234.00, KWD
// 12.34 printed KWD 12.340) does not differ.
func TestInvoicePDFAmountFinerThanItsCurrencyDiffers(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme")
	for i, tc := range []struct {
		currency, amount, printed string
		differs                   bool
	}{
		{"JPY", "1234.50", "JPY 1,235", true},
		{"jpy", "99.40", "JPY 99", true},
		{"JPY", "1234.00", "JPY 1,234", false},
		{"KWD", "12.34", "KWD 12.340", false},
		{"USD", "99.95", "USD 99.95", false},
	} {
		id := e.addInvoice(t, acme, invoice.Customer{Name: "Zoë", Email: fmt.Sprintf("z%d@example.org", i)}, invoice.New{
			Number: fmt.Sprintf("NL-%d", i), Currency: tc.currency,
			Amount: decimal.NewNullDecimal(decimal.RequireFromString(tc.amount)),
		})
		res, logs := renderLogged(t, e, acme.ID, id)
		text := pdfToText(t, e.readDocument(t, acme, invoice.DocumentKey(id)))
		if !strings.Contains(text, tc.printed) {
			t.Errorf("%s %s without lines: PDF lacks %s:\n%s", tc.currency, tc.amount, tc.printed, text)
		}
		if got := strings.Contains(res, `"amount_differs":true`); got != tc.differs {
			t.Errorf("%s %s without lines, printed %s: result %s, amount_differs %v, want %v", tc.currency, tc.amount, tc.printed, res, got, tc.differs)
		}
		var warned bool
		for _, l := range strings.Split(logs, "\n") {
			if strings.Contains(l, `"level":"WARN"`) && strings.Contains(l, "amount") &&
				strings.Contains(l, `"tenant_id":"`+acme.ID+`"`) && strings.Contains(l, fmt.Sprintf(`"invoice_id":%d`, id)) {
				warned = true
			}
		}
		if warned != tc.differs {
			t.Errorf("%s %s without lines: warned %v, want %v:\n%s", tc.currency, tc.amount, warned, tc.differs, logs)
		}
	}
}

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
		res, logs := renderLogged(t, e, acme.ID, id)
		if got := strings.Contains(res, `"amount_differs":true`); got != tc.differs {
			t.Errorf("%s %s with lines %v: result %s, amount_differs %v, want %v", tc.currency, tc.amount, tc.lines, res, got, tc.differs)
		}
		var warned bool
		for _, l := range strings.Split(logs, "\n") {
			if strings.Contains(l, `"level":"WARN"`) && strings.Contains(l, `"amount":"`) && strings.Contains(l, `"lines_total":"`) &&
				strings.Contains(l, `"tenant_id":"`+acme.ID+`"`) && strings.Contains(l, fmt.Sprintf(`"invoice_id":%d`, id)) {
				warned = true
			}
		}
		if warned != tc.differs {
			t.Errorf("%s %s with lines: warned %v, want %v:\n%s", tc.currency, tc.amount, warned, tc.differs, logs)
		}
	}
}

// renderLogged runs invoice:pdf of invoice id of tenant through the
// production chain and returns its task result and what it logged (JSON).
func renderLogged(t *testing.T, e *handlerEnv, tenant string, id int64) (result, logs string) {
	t.Helper()
	var logBuf, res bytes.Buffer
	w := workertest.New(e.h, worker.MuxOptions{Logger: slog.New(slog.NewJSONHandler(&logBuf, nil))})
	if err := w.Work(worker.RecordResults(e.ctx, &res), tasks.InvoicePDF{TenantID: tenant, InvoiceID: id}); err != nil {
		t.Fatal(err)
	}
	return res.String(), logBuf.String()
}
