package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/invoicing/tenantworker/tasks"
)

// TestTaskArchivedByAnOperatorSaysSo: a task an operator archived from the
// asynq dashboard before any attempt (asynq records no error for it) is
// answered archived with a reason, as every archived task is, not with an
// empty last_error; with and without fair dispatch.
func TestTaskArchivedByAnOperatorSaysSo(t *testing.T) {
	t.Parallel()
	for name, b := range map[string]*bundle{"plain": setup(t), "fair": setupFair(t)} {
		acme := b.active(t, "acme")
		r := b.do(t, request{method: http.MethodPost, host: acme.host(), path: "/v1/invoices/1/pdf", bearer: acme.key})
		wantStatus(t, r, http.StatusAccepted)
		id := r.json(t)["task_id"].(string)
		if err := b.inspector.ArchiveTask(tasks.QueueDefault, id); err != nil { // the dashboard's "archive"
			t.Fatalf("%s: %v", name, err)
		}
		r = b.do(t, request{method: http.MethodGet, host: acme.host(), path: "/v1/tasks/" + id, bearer: acme.key})
		wantStatus(t, r, http.StatusOK)
		if m := r.json(t); m["state"] != "archived" || m["last_error"] != "archived by an operator" {
			t.Errorf("%s: task archived from the dashboard answers %s, want state archived, last_error %q", name, r.body, "archived by an operator")
		}
	}
}
