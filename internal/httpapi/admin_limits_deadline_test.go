package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
)

// TestAdminDeclaredTooLarge: a body announced over 1 MiB under
// /admin is answered by observe before adminSubtree: the answer lacks the
// anti-framing headers every /admin answer must carry, and with the admin
// routes disabled it is 413 instead of 404.
func TestAdminDeclaredTooLarge(t *testing.T) {
	t.Parallel()
	big := `{"slug":"acme","name":"` + strings.Repeat("n", httpapi.MaxBodyBytes) + `"}`
	for _, token := range []string{adminToken, ""} {
		b := setup(t, func(o *httpapi.Options) { o.AdminToken = token })
		r := b.do(t, request{method: http.MethodPost, path: "/admin/tenants", bearer: adminToken, body: strings.NewReader(big)})
		if r.header.Get("X-Frame-Options") != "DENY" || r.header.Get("Content-Security-Policy") != "frame-ancestors 'none'" {
			t.Errorf("token set=%v: status %d, X-Frame-Options %q, CSP %q; want DENY and frame-ancestors 'none'",
				token != "", r.status, r.header.Get("X-Frame-Options"), r.header.Get("Content-Security-Policy"))
		}
		if token == "" && r.status != http.StatusNotFound {
			t.Errorf("admin disabled: POST /admin/tenants with a large body: %d %s, want 404", r.status, r.body)
		}
	}
}

// TestTaskStateEndsAtDeadlineWhileRecordsStall: GET /v1/tasks/{id}
// of an archived task reads the tenant's task record (publicLastError)
// outside the detached look-up: when the Redis holding the records (in a
// Redis Cluster, the master of the tenant's {tn_...} slot, not the
// queue's) answers nothing, the request is not answered at
// REQUEST_TIMEOUT but when the Redis client gives up.
func TestTaskStateEndsAtDeadlineWhileRecordsStall(t *testing.T) {
	t.Parallel()
	recSrv := testenv.StartRedis(t, testenv.RedisOptions{})
	recRdb := redis.NewClient(&redis.Options{Addr: recSrv.Addr()}) // go-redis defaults, as in production
	t.Cleanup(func() { _ = recRdb.Close() })
	records := tasks.NewTaskRecords(recRdb, tasks.TaskRecordsOptions{KeyPrefix: "test:records:"})
	const requestTimeout = time.Second
	b := setup(t, func(o *httpapi.Options) { o.RequestTimeout = requestTimeout; o.TaskRecords = records })
	acme := b.active(t, "acme")

	srv := asynq.NewServer(b.redisOpt, asynq.Config{
		Queues: map[string]int{tasks.QueueDefault: 1}, Concurrency: 1, LogLevel: asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeInvoicePDF, func(context.Context, *asynq.Task) error {
		return fmt.Errorf("boom: %w", asynq.SkipRetry)
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)

	r := b.do(t, request{method: http.MethodPost, host: acme.host(), path: "/v1/invoices/1/pdf", bearer: acme.key})
	wantStatus(t, r, http.StatusAccepted)
	id := r.json(t)["task_id"].(string)
	if err := records.Put(t.Context(), acme.ID, tasks.TaskRecord{TaskID: id, Type: tasks.TypeInvoicePDF, Queue: tasks.QueueDefault, Reason: "invoice not found"}); err != nil {
		t.Fatal(err)
	}
	get := request{method: http.MethodGet, host: acme.host(), path: "/v1/tasks/" + id, bearer: acme.key}
	deadline := time.Now().Add(time.Minute)
	for {
		r = b.do(t, get)
		var m map[string]any
		_ = json.Unmarshal(r.body, &m)
		if m["state"] == "archived" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task not archived: %s", r.body)
		}
		time.Sleep(20 * time.Millisecond)
	}

	answered, resume := stopRedis(t, recRdb, recSrv.Addr())
	start := time.Now()
	r = b.doWithin(t, get)
	took := time.Since(start)
	stillStopped := !answered()
	resume()
	t.Logf("answer after %v (REQUEST_TIMEOUT %v, records Redis still stopped: %v): %d %s", took.Round(time.Millisecond), requestTimeout, stillStopped, r.status, r.body)
	if took > requestTimeout+time.Second {
		t.Errorf("GET /v1/tasks/{id} answered after %v, REQUEST_TIMEOUT %v", took.Round(time.Millisecond), requestTimeout)
	}
	wantUnavailable(t, r)
}
