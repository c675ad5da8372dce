package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
)

// TestRefusedAtMaxmemoryKeepsArchivedRecord: a render Redis refuses at
// maxmemory (503, "nothing of the refused request is kept") must not drop
// the tenant's record of the invoice's earlier archived render.
func TestRefusedAtMaxmemoryKeepsArchivedRecord(t *testing.T) {
	t.Parallel()
	for _, cfg := range []*fair.Config{{MinPending: 1}, nil} {
		t.Run(fmt.Sprintf("fair=%v", cfg != nil), func(t *testing.T) {
			ctx := context.Background()
			srv := testenv.StartRedis(t, testenv.RedisOptions{})
			b := setupOn(t, srv.Addr(), cfg)
			tn := b.active(t, "acme")
			id7 := fmt.Sprintf("invoice:pdf:%s:7", tn.ID)
			if err := b.records.Put(ctx, tn.ID, tasks.TaskRecord{TaskID: id7, Type: tasks.TypeInvoicePDF,
				Queue: tasks.QueueDefault, Reason: "invoice cannot be rendered"}); err != nil {
				t.Fatal(err)
			}
			if err := b.rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
				t.Fatal(err)
			}
			for _, rq := range []request{
				{method: http.MethodPost, path: "/v1/invoices/7/pdf", host: tn.host(), bearer: tn.key},
				{method: http.MethodPost, path: "/v1/invoices/pdf", host: tn.host(), bearer: tn.key, body: strings.NewReader(`{"invoice_ids":[7]}`)},
			} {
				wantStatus(t, b.do(t, rq), http.StatusServiceUnavailable)
			}
			if err := b.rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
				t.Fatal(err)
			}
			r := b.do(t, request{method: http.MethodGet, path: "/v1/tasks/" + id7, host: tn.host(), bearer: tn.key})
			if r.status != http.StatusOK {
				t.Fatalf("GET the archived render after refused requests: %d %s, want 200", r.status, r.body)
			}
		})
	}
}
