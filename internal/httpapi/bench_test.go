package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/tasks"
)

// benchClients is the number of concurrent clients of the benchmarks.
const benchClients = 64

// runConcurrently runs op b.N times spread over benchClients goroutines and
// reports requests/s and the p50/p99 latency of op.
func runConcurrently(b *testing.B, op func(n int64) error) {
	b.Helper()
	var (
		next    atomic.Int64
		mu      sync.Mutex
		all     []time.Duration
		wg      sync.WaitGroup
		firstMu sync.Mutex
		first   error
	)
	b.ResetTimer()
	start := time.Now()
	for range benchClients {
		wg.Go(func() {
			lat := make([]time.Duration, 0, b.N/benchClients+1)
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					break
				}
				t0 := time.Now()
				if err := op(n); err != nil {
					firstMu.Lock()
					if first == nil {
						first = err
					}
					firstMu.Unlock()
					return
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if first != nil {
		b.Fatal(first)
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[min(len(all)-1, int(float64(len(all))*p))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
}

// BenchmarkEnqueuePDF measures POST /v1/invoices/{id}/pdf end to end: a
// real listener, 64 concurrent keep-alive clients, the cached catalog, the
// invoice check in PostgreSQL and real Redis; every request enqueues a new
// task (distinct invoices, as many as requests).
func BenchmarkEnqueuePDF(b *testing.B) {
	bd := setup(b, func(o *httpapi.Options) {
		o.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil)) // access log at Info, as in production
	})
	acme := bd.active(b, "acme")
	addInvoices(b, bd, acme, b.N)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients, MaxConnsPerHost: benchClients}}
	b.Cleanup(client.CloseIdleConnections)

	runConcurrently(b, func(n int64) error {
		req, _ := http.NewRequest(http.MethodPost, bd.srv.URL+"/v1/invoices/"+fmt.Sprint(n)+"/pdf", nil)
		req.Host = acme.host()
		req.Header.Set("Authorization", "Bearer "+acme.key)
		return send202(client, req)
	})
}

// send202 sends req, reads its body and wants 202 Accepted.
func send202(client *http.Client, req *http.Request) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// BenchmarkBareEnqueue is the baseline: asynq.Client.Enqueue of the same
// task (same payload shape, queue, id scheme, retention) from 64
// goroutines, without HTTP, tenant resolution or the Enqueuer. (The only
// raw asynq enqueue in this package, and only as a measuring stick.)
func BenchmarkBareEnqueue(b *testing.B) {
	bd := setup(b)
	client := asynq.NewClient(bd.redisOpt)
	b.Cleanup(func() { _ = client.Close() })
	run := time.Now().UnixNano() % 1e9

	runConcurrently(b, func(n int64) error {
		p := tasks.InvoicePDF{TenantID: "tn_bench", InvoiceID: run*1e9 + n}
		data, err := json.Marshal(p)
		if err != nil {
			return err
		}
		_, err = client.Enqueue(asynq.NewTask(p.TypeName(), data, p.Spec().Options()...))
		return err
	})
}
