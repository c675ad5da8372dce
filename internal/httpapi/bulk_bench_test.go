package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/internal/procstat"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tenantctx"
)

// BenchmarkEnqueuePDFBulk measures POST /v1/invoices/pdf with 100 new
// invoice ids per request, fair admission on, 64 concurrent keep-alive
// clients (net/http's) over 20 or more tenants (up to 8,000 tasks each,
// under the free plan's waiting cap); an op is one request. Besides req/s
// and tasks/s it reports, per task, the CPU of redis-server, of the test's
// PostgreSQL backends and of this process (the service and its clients):
// compare with BenchmarkBareEnqueue's enqueues/s, and with tasks'
// BenchmarkEnqueueMany for the Enqueuer and Redis alone.
func BenchmarkEnqueuePDFBulk(b *testing.B) {
	const perRequest = 100
	tenants := max(20, (b.N*perRequest+7999)/8000)
	bd := setupFair(b, func(o *httpapi.Options) {
		o.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	})
	perTenant := (b.N*perRequest)/tenants + perRequest
	tns := make([]tenant, tenants)
	for i := range tns {
		tns[i] = bd.active(b, fmt.Sprintf("bulk%d", i))
		addInvoices(b, bd, tns[i], perTenant)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients, MaxConnsPerHost: benchClients}}
	b.Cleanup(client.CloseIdleConnections)
	taken := make([]atomic.Int64, tenants)
	u0, s0, p0 := testenv.ReadRedisUsage(b, bd.rdb), testenv.ProcessCPU(), backendCPU(b, bd.pool)
	runConcurrently(b, func(n int64) error {
		k := int(n % int64(tenants))
		first := taken[k].Add(perRequest) - perRequest + 1
		var body strings.Builder
		body.WriteString(`{"invoice_ids":[`)
		for i := range int64(perRequest) {
			if i > 0 {
				body.WriteByte(',')
			}
			body.WriteString(strconv.FormatInt(first+i, 10))
		}
		body.WriteString(`]}`)
		req, _ := http.NewRequest(http.MethodPost, bd.srv.URL+"/v1/invoices/pdf", strings.NewReader(body.String()))
		req.Host = tns[k].host()
		req.Header.Set("Authorization", "Bearer "+tns[k].key)
		return send202(client, req)
	})
	n := float64(b.N * perRequest)
	b.ReportMetric(n/b.Elapsed().Seconds(), "tasks/s")
	b.ReportMetric(float64(testenv.ReadRedisUsage(b, bd.rdb).Sub(u0).CPU.Microseconds())/n, "redis-µs/task")
	b.ReportMetric(float64((testenv.ProcessCPU()-s0).Microseconds())/n, "go-µs/task")
	var pg time.Duration
	for pid, cpu := range backendCPU(b, bd.pool) {
		pg += cpu - p0[pid] // a backend started during the run counts whole
	}
	b.ReportMetric(float64(pg.Microseconds())/n, "pg-µs/task")
}

// addInvoices gives tn invoices up to id n (active made 1..activeInvoices).
func addInvoices(b *testing.B, bd *bundle, tn tenant, n int) {
	b.Helper()
	for from := activeInvoices + 1; from <= n; from += 1000 {
		var invs []invoice.New
		for i := from; i <= min(n, from+999); i++ {
			invs = append(invs, invoice.New{Number: fmt.Sprintf("B-%d", i), Status: "sent",
				Customer: invoice.Customer{Name: "Customer", Email: fmt.Sprintf("b%d@%s.example", i, tn.Slug)}})
		}
		err := schema.InTenant(tenantctx.WithTenant(context.Background(), tn.Tenant), bd.pool, func(ctx context.Context, tx pgx.Tx) error {
			_, err := invoice.Create(ctx, tx, invs...)
			return err
		})
		if err != nil {
			b.Fatalf("invoices of %s: %v", tn.Slug, err)
		}
	}
}

// backendCPU is the CPU time so far of each PostgreSQL backend connected
// to pool's database (the test's own), by process id.
func backendCPU(b *testing.B, pool *pgxpool.Pool) map[int]time.Duration {
	b.Helper()
	rows, err := pool.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		b.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		b.Fatal(err)
	}
	out := make(map[int]time.Duration, len(pids))
	for _, pid := range pids {
		if st, err := procstat.Read(int(pid)); err == nil {
			out[int(pid)] = st.CPU
		}
	}
	return out
}
