package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/tasks"
)

// enqueue is scenario 4: POST /v1/invoices/{id}/pdf against the real
// cmd/enqueue binary (a child process on loopback) from 64 keep-alive
// clients, each request a new invoice id of one of the core tenants
// (round-robin), vs asynq.Client.Enqueue of the same task (payload, queue,
// task id, retention) from 64 goroutines. The measured clients are the
// bench's lean HTTP/1.1 load generator (leanHTTP, like wrk: one write and
// one buffered read per request); a diagnostic round per round uses
// net/http's client, whose own per-request cost lands on the same CPUs.
// Each of the sz.EnqueueRounds rounds measures the single requests, a
// bare baseline round and a bulk round back to back, the bare one in the
// middle, then sz.BulkPairs-1 more bare and bulk pairs (a bulk pair
// costs a tenth of the single-request rounds, and each of its rounds lasts
// a fraction of a second: the bulk ratio needs more samples), then the
// net/http diagnostic round; rounds of even number run in the reverse
// order, so a drift of the machine's speed within a round favours neither
// side. Each ratio's target is judged on the median of its pairs' ratios
// (Metric.Pairs): a slow stretch of the shared machine then hits both
// sides of a pair. A last round repeats the ids of an earlier one: each
// request then finds its task pending and returns it (the dedupe path),
// reported without target. Every request names an invoice the tenant has
// (the service answers 404 for others): the scenario seeds them first.
//
// Bulk rounds send the same number of tasks as POST /v1/invoices/pdf
// requests of sizes.BulkBatch ids each (-bulk-batch) (the lean client too, with the JSON
// body), against the bare Client.Enqueue rate of single tasks.
func (b *bench) enqueue(ctx context.Context, s *Scenario) error {
	c, err := b.openCore(ctx)
	if err != nil {
		return err
	}
	bin, err := b.env.binary(ctx, enqueuePkg)
	if err != nil {
		return skipError{reason: "cmd/enqueue does not build: " + err.Error()}
	}
	n, clients, rounds, bulkPairs := b.sz.EnqueueN, b.sz.Clients, max(b.sz.EnqueueRounds, 1), max(b.sz.BulkPairs, 1)
	bulkBatch := max(b.sz.BulkBatch, 1)
	s.Sizes["tenants"] = len(c.tenants)
	s.Sizes["requests_per_round"] = n
	s.Sizes["rounds"] = rounds
	s.Sizes["bulk_pairs_per_round"] = bulkPairs
	s.Sizes["clients"] = clients
	s.Sizes["warmup_requests"] = b.sz.WarmN
	s.Sizes["bulk_batch"] = bulkBatch

	// Invoices for every HTTP request: warm-up and rounds of the lean and
	// net/http clients, and the bulk rounds.
	T := len(c.tenants)
	perRound := func(count int) int { return (count + T - 1) / T }
	bulkReqs := max(n/bulkBatch, 1)
	// The bulk rounds' requests and how many are in flight at once (fewer
	// than clients when the round has fewer requests): their p99 is of
	// bulkReqs samples.
	s.Sizes["bulk_requests_per_round"] = bulkReqs
	s.Sizes["bulk_clients"] = min(clients, bulkReqs)
	perTenant := 2*perRound(b.sz.WarmN) + rounds*2*perRound(n) + (rounds*bulkPairs+1)*perRound(bulkReqs)*bulkBatch
	progress("enqueue: seeding %d invoices in each of %d tenants", perTenant, T)
	seedStart := time.Now()
	ids, err := seedInvoices(ctx, c.pool, c.tenants, invoiceSeed{count: perTenant, lines: 1, status: "sent", dueDays: 10, text: enqueueText})
	if err != nil {
		return err
	}
	s.Sizes["invoices_per_tenant"] = perTenant
	progress("enqueue: seeded in %.1fs", time.Since(seedStart).Seconds())
	cursor := 0 // the next unused index into each tenant's ids
	take := func(k int) (int, error) {
		if cursor+k > perTenant {
			return 0, fmt.Errorf("enqueue scenario: %d invoices per tenant are not enough", perTenant)
		}
		at := cursor
		cursor += k
		return at, nil
	}

	svcEnv := map[string]string{
		"DATABASE_URL":  c.url,
		"REDIS_URL":     b.env.redisURL,
		"DOMAIN_SUFFIX": ".localhost",
		"DOCUMENTS_DIR": b.env.dir + "/enqueue/documents",
	}
	var svcAddr string
	var svcMemory func() (int64, int64, error)
	if b.inProcess {
		svc, err := startInProcessEnqueue(ctx, svcEnv)
		if err != nil {
			return err
		}
		defer svc.stop()
		svcAddr, svcMemory = svc.addr, selfMemory
		s.note("-inprocess: the service ran inside the bench (enqueueapp.RunWith), not as cmd/enqueue; its RSS is the bench's")
	} else {
		svc, err := startProc(ctx, "enqueue", bin, svcEnv)
		if err != nil {
			return err
		}
		defer svc.stop()
		svcAddr, svcMemory = svc.addr, svc.memory
	}

	httpc := &http.Client{Transport: &http.Transport{
		MaxIdleConns: clients, MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients, DisableCompression: true,
	}, Timeout: 30 * time.Second}
	defer httpc.CloseIdleConnections()
	base := "http://" + svcAddr + "/v1/invoices/"
	// invoiceAt is request i's invoice in a round starting at offset.
	invoiceAt := func(offset, i int) int64 { return ids[i%T][offset+i/T] }
	post := func(ctx context.Context, invoice int64, i int) error {
		t := c.tenants[i%len(c.tenants)]
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+strconv.FormatInt(invoice, 10)+"/pdf", nil)
		if err != nil {
			return err
		}
		req.Host = t.Slug + ".localhost"
		req.Header.Set("Authorization", "Bearer "+t.APIKey)
		resp, err := httpc.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("POST %s: %d %s", req.URL.Path, resp.StatusCode, body)
		}
		return nil
	}
	lean := newLeanHTTP(svcAddr, clients)
	defer lean.close()
	// postLeanAs sends one request with the lean client; with repeat it
	// checks that the service answered with the pending task (the dedupe
	// round measures that path only). New requests are not checked: an
	// enqueue the autopipeliner sent twice can answer "existing": true.
	postLeanAs := func(ctx context.Context, invoice int64, i int, repeat bool) error {
		t := c.tenants[i%len(c.tenants)]
		path := "/v1/invoices/" + strconv.FormatInt(invoice, 10) + "/pdf"
		status, body, err := lean.post(ctx, t.Slug+".localhost", path, t.APIKey, nil)
		if err != nil {
			return fmt.Errorf("POST %s: %w", path, err)
		}
		if status != http.StatusAccepted {
			return fmt.Errorf("POST %s: %d %s", path, status, body)
		}
		if repeat {
			return checkExisting(path, body, true)
		}
		return nil
	}
	postLean := func(ctx context.Context, invoice int64, i int) error { return postLeanAs(ctx, invoice, i, false) }
	client := asynq.NewClientFromRedisClient(b.env.rdb)
	bare := func(ctx context.Context, invoice int64, i int) error {
		p := tasks.InvoicePDF{TenantID: c.tenants[i%len(c.tenants)].ID, InvoiceID: invoice}
		data, err := json.Marshal(p)
		if err != nil {
			return err
		}
		_, err = client.EnqueueContext(ctx, asynq.NewTask(p.TypeName(), data, p.Spec().Options()...))
		return err
	}
	postBulk := func(ctx context.Context, offset, j int) error {
		t := c.tenants[j%T]
		batch := ids[j%T][offset+(j/T)*bulkBatch : offset+(j/T+1)*bulkBatch]
		body, _ := json.Marshal(map[string][]int64{"invoice_ids": batch})
		status, out, err := lean.post(ctx, t.Slug+".localhost", "/v1/invoices/pdf", t.APIKey, body)
		if err != nil {
			return fmt.Errorf("POST /v1/invoices/pdf (%d ids): %w", len(batch), err)
		}
		if status != http.StatusAccepted {
			return fmt.Errorf("POST /v1/invoices/pdf (%d ids): %d %.300s", len(batch), status, out)
		}
		return nil
	}
	// Invoice ids: the bare rounds use a block of n made-up ids per round
	// (asynq does not check them); the HTTP rounds take n seeded invoices,
	// so every request is a new task.
	block := int64(0)
	round := func(fn func(context.Context, int64, int) error, count int) (loadResult, int, error) {
		offset, err := take(perRound(count))
		if err != nil {
			return loadResult{}, 0, err
		}
		r, err := runClosedLoop(ctx, clients, count, func(ctx context.Context, i int) error {
			return fn(ctx, invoiceAt(offset, i), i)
		})
		return r, offset, err
	}
	bareRound := func(count int) (loadResult, error) {
		block++
		first := block * 10_000_000
		return runClosedLoop(ctx, clients, count, func(ctx context.Context, i int) error {
			return bare(ctx, first+int64(i), i)
		})
	}
	bulkRound := func() (loadResult, error) {
		offset, err := take(perRound(bulkReqs) * bulkBatch)
		if err != nil {
			return loadResult{}, err
		}
		return runClosedLoop(ctx, clients, bulkReqs, func(ctx context.Context, j int) error {
			return postBulk(ctx, offset, j)
		})
	}

	progress("enqueue: warm-up (%d requests each)", b.sz.WarmN)
	for _, fn := range []func(context.Context, int64, int) error{postLean, post} {
		if _, _, err := round(fn, b.sz.WarmN); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	if _, err := bareRound(b.sz.WarmN); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if _, err := bulkRound(); err != nil {
		return fmt.Errorf("bulk warm-up: %w", err)
	}
	// bareRates are every bare round's, bulkBareRates those paired with a
	// bulk round (all of them), httpBareRates those paired with a
	// single-request round (the first of each round), netHTTPBareRates
	// those nearest the net/http round (the last of each round).
	var bareRates, httpBareRates, netHTTPBareRates, httpRates, netHTTPRates, bulkTaskRates, bulkReqRates []float64
	var bareP99, httpP99, bareP50, httpP50, bulkP99 []float64
	var lastHTTPBlock int
	for r := range rounds {
		type step struct {
			name string
			run  func() error
		}
		var hr, nr loadResult
		var br, bk []loadResult
		bareStep := func() (err error) {
			res, err := bareRound(n)
			br = append(br, res)
			return err
		}
		bulkStep := func() (err error) {
			res, err := bulkRound()
			bk = append(bk, res)
			return err
		}
		steps := []step{{"http", func() (err error) { hr, lastHTTPBlock, err = round(postLean, n); return err }}}
		for range bulkPairs {
			steps = append(steps, step{"bare", bareStep}, step{"bulk", bulkStep})
		}
		steps = append(steps, step{"net/http client", func() (err error) { nr, _, err = round(post, n); return err }})
		if r%2 == 1 {
			slices.Reverse(steps)
		}
		for _, st := range steps {
			if err := st.run(); err != nil {
				return fmt.Errorf("%s round %d: %w", st.name, r+1, err)
			}
		}
		if r%2 == 1 { // in the order of the pairs: bare i and bulk i, the first bare next to the http round
			slices.Reverse(br)
			slices.Reverse(bk)
		}
		line := fmt.Sprintf("enqueue: round %d: bare %.0f/s, http %.0f/s (%.2f; net/http client %.0f/s); bulk tasks/s:", r+1, br[0].rate(), hr.rate(), hr.rate()/br[0].rate(), nr.rate())
		for i := range bk {
			bareRates = append(bareRates, br[i].rate())
			bulkReqRates = append(bulkReqRates, bk[i].rate())
			bulkTaskRates = append(bulkTaskRates, bk[i].rate()*float64(bulkBatch))
			bulkP99 = append(bulkP99, millis(percentile(bk[i].lat, 99)))
			bareP50, bareP99 = append(bareP50, millis(percentile(br[i].lat, 50))), append(bareP99, millis(percentile(br[i].lat, 99)))
			line += fmt.Sprintf(" %.0f (bare %.0f/s, %.2f)", bk[i].rate()*float64(bulkBatch), br[i].rate(), bk[i].rate()*float64(bulkBatch)/br[i].rate())
		}
		httpBareRates, httpRates = append(httpBareRates, br[0].rate()), append(httpRates, hr.rate())
		netHTTPRates, netHTTPBareRates = append(netHTTPRates, nr.rate()), append(netHTTPBareRates, br[len(br)-1].rate())
		httpP50, httpP99 = append(httpP50, millis(percentile(hr.lat, 50))), append(httpP99, millis(percentile(hr.lat, 99)))
		progress("%s", line)
	}
	// Dedupe: the same ids as the last HTTP round, all still pending.
	dr, err := runClosedLoop(ctx, clients, n, func(ctx context.Context, i int) error {
		return postLeanAs(ctx, invoiceAt(lastHTTPBlock, i), i, true)
	})
	if err != nil {
		return fmt.Errorf("dedupe round: %w", err)
	}
	hwm, _, _ := svcMemory()

	s.add("requests", median(httpRates), "req/s").withRounds(httpRates).
		against("bare Client.Enqueue, the round next to each", median(httpBareRates), "enqueues/s", httpBareRates).paired().
		target(">=", 0.5, true, "median of the pairs' ratios >= 0.5")
	s.add("diagnostic: requests from net/http clients", median(netHTTPRates), "req/s").withRounds(netHTTPRates).
		against("bare Client.Enqueue, the bare round nearest each", median(netHTTPBareRates), "enqueues/s", netHTTPBareRates).paired()
	s.add("request p50", median(httpP50), "ms").withRounds(httpP50).against("bare Enqueue p50", median(bareP50), "ms", bareP50)
	s.add("request p99", median(httpP99), "ms").withRounds(httpP99).against("bare Enqueue p99", median(bareP99), "ms", bareP99)
	s.add("repeat requests (dedupe hit)", dr.rate(), "req/s").against("bare Client.Enqueue", median(bareRates), "enqueues/s", nil)
	s.add("repeat request p99", millis(percentile(dr.lat, 99)), "ms")
	s.add(fmt.Sprintf("bulk POST /v1/invoices/pdf, %d ids per request: tasks enqueued", bulkBatch), median(bulkTaskRates), "tasks/s").withRounds(bulkTaskRates).
		against("bare Client.Enqueue, one task per call", median(bareRates), "enqueues/s", bareRates).paired().
		target(">=", 2, true, "median of the pairs' ratios >= 2")
	s.add("bulk requests", median(bulkReqRates), "req/s").withRounds(bulkReqRates)
	s.add("bulk request p99", median(bulkP99), "ms").withRounds(bulkP99)
	s.add("enqueue service peak RSS", float64(hwm)/(1<<20), "MiB")
	s.note("each of the %d rounds measures single requests, bare Client.Enqueue and bulk requests back to back (bare in the middle), then %d more bare and bulk pairs and the net/http round (even rounds in the reverse order); the targets are judged on the median of the pairs' ratios (pairs.median: %d single-request pairs, %d bulk pairs), not on the ratio of the medians (ratio)", rounds, bulkPairs-1, rounds, rounds*bulkPairs)
	s.note("the 64 HTTP clients run in the bench process and the service in its own; both share the machine's CPUs with Redis (bare Enqueue has no HTTP client or server to pay for)")
	s.note("requests and bulk requests: the bench's lean HTTP/1.1 client (keep-alive, one write and one buffered read per request, as wrk does); the diagnostic row sends the single requests with net/http's client, which spends more CPU per request on the machine the service shares")
	s.note("the service runs with its defaults, REDIS_AUTOPIPELINE=true and FAIR_DISPATCH=true included: concurrent requests' enqueues share Redis pipelines, and tenant tasks go into their tenants' backlogs (no worker runs, so they stay there)")
	s.note("every request checks its invoice(s) in the tenant's schema before enqueueing (404 otherwise): one pinned PostgreSQL query per request, single or bulk")
	s.Bound = "bare: one Redis round trip (enqueue script) per task from 64 goroutines, bounded by Redis's single thread; HTTP: the same enqueue, coalesced with other requests' into Redis pipelines, plus HTTP parsing and the JSON response, two cached lookups (tenant by slug, API key by SHA-256: in-process hits) and the access log line; per request about four syscalls in the service (read, the server's background read, write, the log line) and two in the client, on the 2 CPUs that Redis and the bare loop use"
	return nil
}

// enqueueText is the seeded invoices' text of scenario 4 (its own kind, so
// its customers do not collide with other scenarios' in the same tenants).
var enqueueText = func() seedText {
	t := singleByte
	t.kind = "enqueue"
	return t
}()

// checkExisting checks that the 202 body of POST path says "existing" as
// want (true: the pending task of a repeated request).
func checkExisting(path string, body []byte, want bool) error {
	var got struct {
		Existing *bool `json:"existing"`
	}
	if err := json.Unmarshal(body, &got); err != nil || got.Existing == nil {
		return fmt.Errorf("POST %s: 202 without \"existing\": %.300s", path, body)
	}
	if *got.Existing != want {
		return fmt.Errorf("POST %s: \"existing\": %t, want %t: %.300s", path, *got.Existing, want, body)
	}
	return nil
}
