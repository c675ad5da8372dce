package httpapi_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/invoicing/tenantworker/tasks"
)

// TestQueueViewsSayAQueueIsPausedInAsynq: a queue paused in asynq itself
// (the dashboard's pause, Inspector.PauseQueue) runs none of its tasks,
// every tenant's, whatever fair dispatch admits; GET /admin/queues and
// GET /admin/tenants/{id}/queue say so (paused_in_asynq), where they
// showed the queue's tasks admitted and pending, and its tenants not
// paused, with nothing to explain why none ran.
func TestQueueViewsSayAQueueIsPausedInAsynq(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "stalled")
	check := func(when string, paused bool) {
		t.Helper()
		r := b.admin(t, http.MethodGet, "/admin/queues", "")
		wantStatus(t, r, http.StatusOK)
		var got struct {
			Queues []map[string]any `json:"queues"`
		}
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatalf("%s: %v", r.body, err)
		}
		for _, o := range got.Queues {
			if want := paused && o["queue"] == tasks.QueueDefault; o["paused_in_asynq"] != want {
				t.Errorf("%s: GET /admin/queues: queue %v has paused_in_asynq %v, want %t: %s", when, o["queue"], o["paused_in_asynq"], want, r.body)
			}
		}
		view := b.admin(t, http.MethodGet, "/admin/tenants/"+tn.ID+"/queue", "")
		wantStatus(t, view, http.StatusOK)
		m := view.json(t)
		if m["paused_in_asynq"] != paused || m["paused"] != false {
			t.Errorf("%s: tenant view: paused_in_asynq %v, paused %v; want %t, false (the tenant is not paused): %s",
				when, m["paused_in_asynq"], m["paused"], paused, view.body)
		}
		for _, qs := range m["queues"].([]any) {
			q := qs.(map[string]any)
			if want := paused && q["queue"] == tasks.QueueDefault; q["paused_in_asynq"] != want {
				t.Errorf("%s: tenant view: queue %v has paused_in_asynq %v, want %t", when, q["queue"], q["paused_in_asynq"], want)
			}
		}
	}
	check("before any pause", false)
	if err := b.inspector.PauseQueue(tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	check("default paused in asynq", true)
	if err := b.inspector.UnpauseQueue(tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	check("after asynq's unpause", false)
}
