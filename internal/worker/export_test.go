package worker

import (
	"context"
	"io"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/invoicing/tenantworker/internal/logrepeat"
)

// Exports for the tests of package worker_test (compiled only with tests).

// MuxOf is the production chain over the handlers given by task type, for
// middleware tests that record instead of work.
func MuxOf(opts MuxOptions, handlers map[string]asynq.Handler) *asynq.ServeMux {
	rs := make([]route, 0, len(handlers))
	for typ, h := range handlers {
		rs = append(rs, route{typ: typ, handler: h})
	}
	return newMux(opts, rs...)
}

// WithLastAttemptKeep returns opts whose chain brings a last attempt kept
// by KeepLastAttempt back lo to hi later instead of 45 to 60 s: for tests
// that wait for a kept attempt to run again (none sends asynq's calls
// twice, which the production bounds guard against). asynq ends the kept
// attempt (its Done deletes the task by id when it finds it active) only
// after the handler returned: with bounds this short, a server with a
// second worker free may take the task again before a Done that a loaded
// machine held back as long, and lose it to that Done; a test that must
// not lose it runs one worker (asynq frees a worker after its Done).
func WithLastAttemptKeep(opts MuxOptions, lo, hi time.Duration) MuxOptions {
	opts.lastAttemptKeep = keepDelay{min: lo, max: hi}
	return opts
}

// RouteTypes returns the task types h's mux registers, in order.
func RouteTypes(h *Handlers) []string {
	var out []string
	for _, r := range h.routes() {
		out = append(out, r.typ)
	}
	return out
}

// SetPageSize makes h read overdue invoices and swept tenants n at a time.
func SetPageSize(h *Handlers, n int) { h.pageSize = n }

// LeaseExpiredDelay is leaseExpiredDelay.
const LeaseExpiredDelay = leaseExpiredDelay

// AsynqLogLevel is asynqLogLevel.
var AsynqLogLevel = asynqLogLevel

// SetExit replaces what l.Fatal calls to exit.
func SetExit(l *AsynqLogger, exit func(int)) { l.exit = exit }

// Processed returns the attempts m counted for a type and outcome.
func (m *Metrics) Processed(typ, outcome string) float64 {
	return testutil.ToFloat64(m.processed.WithLabelValues(typ, outcome))
}

// RenderSeries returns how many series the render histogram has.
func (m *Metrics) RenderSeries() int { return testutil.CollectAndCount(m.render) }

// RecordResults returns ctx carrying w as the result writer, so that a
// task run through workertest (which has none) records its result there.
func RecordResults(ctx context.Context, w io.Writer) context.Context {
	return context.WithValue(ctx, resultWriterKey{}, w)
}

// SetBeforeRender makes h call fn with the task's ctx right before it
// renders a PDF.
func SetBeforeRender(h *Handlers, fn func(ctx context.Context)) { h.beforeRender = fn }

// PDFRenders returns the renders m counted for a font path.
func (m *Metrics) PDFRenders(fontPath string) float64 {
	return testutil.ToFloat64(m.pdfRenders.WithLabelValues(fontPath))
}

// PDFUnchanged returns the invoice:pdf tasks m counted that kept an
// unchanged document.
func (m *Metrics) PDFUnchanged() float64 { return testutil.ToFloat64(m.pdfUnchanged) }

// SetFinishReserve makes h end a reminder's send d (at most half the
// task's time) before the task's deadline, instead of reminderFinishReserve.
func SetFinishReserve(h *Handlers, d time.Duration) { h.finishReserve = d }

// SetAsynqLoggerClock replaces the clock by which l spaces the lines asynq
// repeats.
func SetAsynqLoggerClock(l *AsynqLogger, now func() time.Time) {
	l.repeats = logrepeat.New(asynqRepeatEvery, now)
}
