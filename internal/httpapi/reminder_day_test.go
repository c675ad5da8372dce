package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/tasks"
)

// TestEnqueueReminderTenantDay: POST /v1/invoices/{id}/reminders names the
// reminder's day (its task id, its payload) as the tenant's calendar day:
// at 02:00 UTC on 15 March it is still 14 March in New York and already
// 15 March in Tokyo and UTC.
func TestEnqueueReminderTenantDay(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 15, 2, 0, 0, 0, time.UTC)
	b := setup(t, func(o *httpapi.Options) { o.Now = func() time.Time { return now } })
	for _, c := range []struct{ slug, zone, day string }{
		{"newyork", "America/New_York", "2026-03-14"},
		{"tokyo", "Asia/Tokyo", "2026-03-15"},
		{"plain", "", "2026-03-15"},
	} {
		tn := b.active(t, c.slug)
		if c.zone != "" {
			if _, err := b.tenancy.SetTimeZone(context.Background(), tn.ID, c.zone, "test"); err != nil {
				t.Fatalf("SetTimeZone(%s): %v", c.zone, err)
			}
		}
		r := b.do(t, request{method: http.MethodPost, host: tn.host(), path: "/v1/invoices/5/reminders", bearer: tn.key})
		wantStatus(t, r, http.StatusAccepted)
		id, _ := r.json(t)["task_id"].(string)
		if !strings.HasSuffix(id, ":"+c.day) {
			t.Errorf("tenant in %q: reminder task id %q, want it to name %s", c.zone, id, c.day)
		}
		var p tasks.InvoiceReminder
		if err := json.Unmarshal(b.taskInfo(t, tasks.QueueLow, id).Payload, &p); err != nil ||
			p != (tasks.InvoiceReminder{TenantID: tn.ID, InvoiceID: 5, Day: c.day}) {
			t.Errorf("tenant in %q: payload %+v (%v), want day %s", c.zone, p, err, c.day)
		}
	}
}
