package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/storage"
)

// TestLoneSurrogateEscapeIsRefused: a \u escape of a UTF-16 surrogate
// without its pair ("\ud83d", as JavaScript's JSON.stringify writes a
// string cut between the two halves of an emoji) names no character;
// encoding/json read it as U+FFFD, so POST /admin/tenants answered 202
// and stored a name other than the one sent, as it did for bytes that
// are not UTF-8. It is 400 now, and a whole pair is still the character
// it stands for.
func TestLoneSurrogateEscapeIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for name, body := range map[string]string{
		"high alone":         `{"slug":"acme-a","name":"Caf\ud83d"}`,
		"high then text":     `{"slug":"acme-b","name":"\ud83dx"}`,
		"high then escape":   `{"slug":"acme-c","name":"\ud83d\""}`,
		"high then high":     `{"slug":"acme-d","name":"\ud83d\ud83d\ude00"}`,
		"low alone":          `{"slug":"acme-e","name":"\ude00 GmbH"}`,
		"low in upper case":  `{"slug":"acme-f","name":"\uDE00"}`,
		"in a member's name": `{"slug":"acme-g","\ud800":1}`,
	} {
		r := b.admin(t, http.MethodPost, "/admin/tenants", body)
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorText(t), "surrogate") {
			t.Errorf("%s: %s answered %d %s; want 400 naming the lone surrogate", name, body, r.status, r.body)
		}
	}
	if ts, err := b.pg.ListTenants(context.Background(), storage.ListOptions{}); err != nil || len(ts) != 0 {
		t.Fatalf("refused requests created tenants: %v, %v", ts, err)
	}

	// A pair, and text that only looks like an escape, are kept as sent.
	r := b.admin(t, http.MethodPost, "/admin/tenants", `{"slug":"acme","name":"Caf\ud83d\ude00 \\ud83d"}`)
	wantStatus(t, r, http.StatusAccepted)
	id, _ := r.json(t)["id"].(string)
	got := b.admin(t, http.MethodGet, "/admin/tenants/"+id, "")
	wantStatus(t, got, http.StatusOK)
	if name := got.json(t)["name"]; name != "Caf\U0001F600 \\ud83d" {
		t.Fatalf("name %q, want %q", name, "Caf\U0001F600 \\ud83d")
	}
}
