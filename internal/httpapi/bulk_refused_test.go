package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/tasks"
)

// TestRefusedRenderKeepsArchivedRecord: a render refused at the tenant's
// waiting cap (429) or at the queue-wide cap (503), single or bulk,
// accepts nothing, so it must not drop what the tenant can see of an
// earlier archived render of the same invoice (its task record: the only
// trace once asynq has trimmed its archive, and the reason shown while
// asynq keeps it).
func TestRefusedRenderKeepsArchivedRecord(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cfg    fair.Config
		limits string
		status int
	}{
		{"tenant cap", fair.Config{MinPending: 1}, `{"max_waiting":3}`, http.StatusTooManyRequests},
		{"queue cap", fair.Config{MinPending: 1, MaxWaitingTotal: 3}, "", http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			b := setupFairConfig(t, tc.cfg)
			tn := b.active(t, "capped")
			if tc.limits != "" {
				wantStatus(t, b.admin(t, http.MethodPut, "/admin/tenants/"+tn.ID+"/limits", tc.limits), http.StatusOK)
			}
			post := func(path, body string) response {
				var rd *strings.Reader
				if body != "" {
					rd = strings.NewReader(body)
				}
				rq := request{method: http.MethodPost, path: path, host: tn.host(), bearer: tn.key}
				if rd != nil {
					rq.body = rd
				}
				return b.do(t, rq)
			}
			for id := 1; id <= 4; id++ { // one admitted, three waiting: at the cap
				wantStatus(t, post(fmt.Sprintf("/v1/invoices/%d/pdf", id), ""), http.StatusAccepted)
			}
			// Invoice 7's earlier render was archived and asynq has trimmed it
			// since: the tenant's record is what is left.
			id7 := fmt.Sprintf("invoice:pdf:%s:7", tn.ID)
			if err := b.records.Put(ctx, tn.ID, tasks.TaskRecord{TaskID: id7, Type: tasks.TypeInvoicePDF,
				Queue: tasks.QueueDefault, Reason: "invoice cannot be rendered"}); err != nil {
				t.Fatal(err)
			}
			check := func(after string) {
				t.Helper()
				r := b.do(t, request{method: http.MethodGet, path: "/v1/tasks/" + id7, host: tn.host(), bearer: tn.key})
				if r.status != http.StatusOK {
					t.Fatalf("%s: GET the archived render: %d %s, want 200", after, r.status, r.body)
				}
				if m := r.json(t); m["state"] != "archived" || m["last_error"] != "invoice cannot be rendered" {
					t.Fatalf("%s: archived render shown as %v", after, m)
				}
			}
			check("before")
			wantStatus(t, post("/v1/invoices/pdf", `{"invoice_ids":[7,8]}`), tc.status)
			check("after a refused bulk request")
			wantStatus(t, post("/v1/invoices/7/pdf", ""), tc.status)
			check("after a refused single request")
		})
	}
}
