package worker

import (
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus/testutil"
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
