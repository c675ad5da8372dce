package tasks

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestEnqueueEndedLateLinesNameTheirTasks: the lines that are the only
// trace of an enqueue whose caller gave up (REQUEST_TIMEOUT) are task
// lines: each names the task's tenant_id, task_id and task_type, once
// applied and once failed (README: "its outcome is logged ... with the
// task ids"; LOG_FORMAT: task lines carry tenant_id, task_id, task_type).
// A failed one used to name no task at all, and no line the tenant.
func TestEnqueueEndedLateLinesNameTheirTasks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		opts    redis.Options
		outcome string
	}{
		// No read timeout: the call waits for Redis and is applied.
		{"applied", redis.Options{ReadTimeout: -1}, "applied"},
		// The client gives up while Redis is stopped: the call fails.
		{"failed", redis.Options{ReadTimeout: 300 * time.Millisecond, MaxRetries: -1}, "failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newOutageRig(t, false, tc.opts)
			var logs testenv.LogBuffer
			r.enq.logger = slog.New(slog.NewJSONHandler(&logs, nil))
			ctx := testContext(t)
			// A round trip first, so the connection exists.
			if _, err := r.enq.Enqueue(ctx, InvoicePDF{TenantID: r.tenantID, InvoiceID: 1}); err != nil {
				t.Fatal(err)
			}
			resume := testenv.StopRedis(t, r.rdb)
			dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			_, err := r.enq.Enqueue(dctx, InvoicePDF{TenantID: r.tenantID, InvoiceID: 2})
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("enqueue past its deadline: %v", err)
			}
			dctx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
			_, err = r.enq.EnqueueMany(dctx, r.tenantID, []Payload{InvoicePDF{TenantID: r.tenantID, InvoiceID: 3}, InvoicePDF{TenantID: r.tenantID, InvoiceID: 4}})
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("bulk enqueue past its deadline: %v", err)
			}
			if tc.outcome == "failed" {
				time.Sleep(time.Second) // past the client's read timeout
			}
			resume()
			if err := r.enq.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			want := map[string]bool{}
			for _, id := range []int64{2, 3, 4} {
				want[InvoicePDF{TenantID: r.tenantID, InvoiceID: id}.Spec().TaskID] = true
			}
			sc := bufio.NewScanner(strings.NewReader(logs.String()))
			for sc.Scan() {
				var rec map[string]any
				if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
					t.Fatalf("not JSON: %s", sc.Text())
				}
				msg, _ := rec["msg"].(string)
				if !strings.HasPrefix(msg, "enqueue ended after its caller gave up") {
					continue
				}
				if !strings.HasSuffix(msg, tc.outcome) {
					t.Errorf("line %s, want outcome %s", sc.Text(), tc.outcome)
				}
				if rec["tenant_id"] != r.tenantID || rec["task_type"] != TypeInvoicePDF {
					t.Errorf("line lacks the task's tenant_id %s or task_type: %s", r.tenantID, sc.Text())
				}
				id, _ := rec["task_id"].(string)
				delete(want, id)
			}
			if len(want) > 0 {
				t.Errorf("no %s line names the tasks %v:\n%s", tc.outcome, want, logs.String())
			}
		})
	}
}
