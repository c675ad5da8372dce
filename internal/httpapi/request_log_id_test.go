package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestComponentLinesOfARequestCarryItsRequestID: a line that a component
// (here the tenant service) logs on a request's path carries the
// request's request_id, as the README promises ("each line with
// request_id"), so that the X-Request-Id of a 409 or a 500 finds the line
// that says why. A provisioning refused over a left-over schema logs which
// schema at warn; without request_id that line could not be told apart
// from another request's.
func TestComponentLinesOfARequestCarryItsRequestID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if _, err := b.pool.Exec(context.Background(), "CREATE SCHEMA tenant_leftover"); err != nil {
		t.Fatal(err)
	}
	r := b.admin(t, http.MethodPost, "/admin/tenants", `{"slug":"leftover","name":"Left Over"}`)
	wantStatus(t, r, http.StatusConflict)
	id := r.header.Get("X-Request-Id")
	found := false
	for _, l := range strings.Split(strings.TrimSpace(b.logs.String()), "\n") {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if n := strings.Count(l, `"request_id":`); n > 1 {
			t.Errorf("request_id %d times in one line:\n%s", n, l)
		}
		if msg, _ := line["msg"].(string); !strings.HasPrefix(msg, "provisioning refused") {
			continue
		}
		found = true
		if line["request_id"] != id {
			t.Errorf("request_id %v, want the answer's X-Request-Id %q:\n%s", line["request_id"], id, l)
		}
	}
	if !found {
		t.Fatalf("no provisioning refused line:\n%s", b.logs.String())
	}
}
