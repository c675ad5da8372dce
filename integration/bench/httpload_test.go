package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestLeanHTTPPost: the lean client sends the host, the bearer token and
// the body (with its length and, when there is one, a JSON content type),
// reads the status and body, and keeps its connection for the next
// request.
func TestLeanHTTPPost(t *testing.T) {
	var conns []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		conns = append(conns, r.RemoteAddr)
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, r.Method+" "+r.Host+" "+r.URL.Path+" "+r.Header.Get("Authorization")+" "+r.Header.Get("Content-Type")+" ["+string(body)+"]")
	}))
	defer srv.Close()
	c := newLeanHTTP(strings.TrimPrefix(srv.URL, "http://"), 1)
	defer c.close()
	for _, tc := range []struct {
		body []byte
		want string
	}{
		{nil, "POST acme.localhost /v1/invoices/7/pdf Bearer k  []"},
		{[]byte(`{"invoice_ids":[1,2]}`), `POST acme.localhost /v1/invoices/pdf Bearer k application/json [{"invoice_ids":[1,2]}]`},
	} {
		path := "/v1/invoices/7/pdf"
		if tc.body != nil {
			path = "/v1/invoices/pdf"
		}
		status, got, err := c.post(context.Background(), "acme.localhost", path, "k", tc.body)
		if err != nil || status != http.StatusAccepted || string(got) != tc.want {
			t.Errorf("post %s: %d %q, %v; want 202 %q", path, status, got, err, tc.want)
		}
	}
	if len(conns) != 2 || conns[0] != conns[1] {
		t.Errorf("requests came from %v: want both on one kept connection", conns)
	}
}
