package integration

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/tasks"
)

// rawResponse is what came back for a raw request.
type rawResponse struct {
	status int
	header http.Header
	body   string
}

// rawRequest writes req byte for byte to addr (so that Host headers and
// paths an HTTP client would refuse reach the server as an attacker sends
// them) and reads one response.
func rawRequest(addr, req string) (rawResponse, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return rawResponse{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	// Write while reading: the server may answer (413, 431) and close
	// before it has read a large request.
	go func() { _, _ = io.WriteString(conn, req) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return rawResponse{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: string(b)}, nil
}

// hostileCase is one request of the table: method, target, Host and extra
// header lines, a body, and the status the service must answer.
type hostileCase struct {
	name    string
	method  string
	target  string
	host    string // "" sends no Host header at all
	headers []string
	body    string
	want    int
}

// request renders the case as raw HTTP/1.1.
func (c hostileCase) request() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", c.method, c.target)
	if c.host != "" {
		fmt.Fprintf(&b, "Host: %s\r\n", c.host)
	}
	for _, h := range c.headers {
		b.WriteString(h + "\r\n")
	}
	if c.body != "" && !hasHeader(c.headers, "Content-Length") && !hasHeader(c.headers, "Transfer-Encoding") {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(c.body))
	}
	b.WriteString("Connection: close\r\n\r\n")
	b.WriteString(c.body)
	return b.String()
}

func hasHeader(headers []string, name string) bool {
	for _, h := range headers {
		if strings.HasPrefix(strings.ToLower(h), strings.ToLower(name)+":") {
			return true
		}
	}
	return false
}

// TestHostileHTTPInput sends a table of hostile requests (Host header
// forms, slugs, invoice and task ids, bodies, headers, keys, methods)
// byte for byte to the real enqueue service and checks each status; then
// that the service still serves, never answered 500, logged no panic, and
// that no tenant schema was touched.
func TestHostileHTTPInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStack(t, stackOptions{workers: 1})
	tenants := s.provision([]string{"acme", "globex"}, tenantName)
	acme, globex := tenants[0], tenants[1]
	for _, tn := range tenants {
		s.seed(tn, invoiceSeed{overdue: 3, lines: 1})
	}
	globexTask := s.mustPost(globex, "pdf", 2).TaskID
	acmeTask := s.mustPost(acme, "pdf", 2).TaskID
	s.waitCompleted(tasks.QueueDefault, []string{globexTask, acmeTask}, 60*time.Second)

	const ah = "acme" + domainSuffix
	bearer := func(k string) string { return "Authorization: Bearer " + k }
	key := bearer(acme.Key)
	admin := bearer(adminToken)
	basic := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+adminToken))
	json := "Content-Type: application/json"
	unknownKey := "tk_" + strings.Repeat("A", 43)
	cases := []hostileCase{
		// Host header forms.
		{"valid host", "POST", "/v1/invoices/1/pdf", ah, []string{key}, "", 202},
		{"host upper case", "POST", "/v1/invoices/1/pdf", "ACME.EXAMPLE.TEST", []string{key}, "", 202},
		{"host with port", "POST", "/v1/invoices/1/pdf", ah + ":8080", []string{key}, "", 202},
		{"host fully qualified", "POST", "/v1/invoices/1/pdf", ah + ".", []string{key}, "", 202},
		{"host under another domain", "POST", "/v1/invoices/1/pdf", ah + ".evil.com", []string{key}, "", 400},
		{"host of another site", "POST", "/v1/invoices/1/pdf", "evil.com", []string{key}, "", 400},
		{"bare suffix", "POST", "/v1/invoices/1/pdf", "example.test", []string{key}, "", 400},
		{"nested label", "POST", "/v1/invoices/1/pdf", "x.acme" + domainSuffix, []string{key}, "", 400},
		{"empty label", "POST", "/v1/invoices/1/pdf", "acme.." + strings.TrimPrefix(domainSuffix, "."), []string{key}, "", 400},
		{"IPv4 literal", "POST", "/v1/invoices/1/pdf", "127.0.0.1", []string{key}, "", 400},
		{"IPv6 literal", "POST", "/v1/invoices/1/pdf", "[::1]:8080", []string{key}, "", 400},
		{"no Host header", "POST", "/v1/invoices/1/pdf", "", []string{key}, "", 400},
		{"two Host headers", "POST", "/v1/invoices/1/pdf", ah, []string{"Host: globex" + domainSuffix, key}, "", 400},
		{"Host with a path", "POST", "/v1/invoices/1/pdf", "acme" + domainSuffix + "/../globex", []string{key}, "", 400},
		{"Host with a NUL", "POST", "/v1/invoices/1/pdf", "acme\x00" + domainSuffix, []string{key}, "", 400},
		{"Host with a bad port", "POST", "/v1/invoices/1/pdf", ah + ":99999999", []string{key}, "", 400},
		{"Host of 300 bytes", "POST", "/v1/invoices/1/pdf", strings.Repeat("a", 300) + domainSuffix, []string{key}, "", 400},
		{"absolute-form target naming another host", "POST", "http://globex" + domainSuffix + "/v1/invoices/1/pdf", ah, []string{key}, "", 403},
		// Slugs.
		{"slug with SQL", "POST", "/v1/invoices/1/pdf", "a'drop" + domainSuffix, []string{key}, "", 400},
		{"reserved slug", "POST", "/v1/invoices/1/pdf", "admin" + domainSuffix, []string{key}, "", 400},
		{"punycode slug", "POST", "/v1/invoices/1/pdf", "xn--acme" + domainSuffix, []string{key}, "", 400},
		{"slug with underscore", "POST", "/v1/invoices/1/pdf", "ac_me" + domainSuffix, []string{key}, "", 400},
		{"unknown slug", "POST", "/v1/invoices/1/pdf", "nobody" + domainSuffix, []string{key}, "", 404},
		{"X-Tenant fallback disabled", "POST", "/v1/invoices/1/pdf", "127.0.0.1", []string{key, "X-Tenant: acme"}, "", 400},
		{"X-Tenant cannot override Host", "POST", "/v1/invoices/1/pdf", ah, []string{key, "X-Tenant: globex"}, "", 202},
		// Keys.
		{"no key", "POST", "/v1/invoices/1/pdf", ah, nil, "", 401},
		{"empty bearer", "POST", "/v1/invoices/1/pdf", ah, []string{"Authorization: Bearer "}, "", 401},
		{"basic auth", "POST", "/v1/invoices/1/pdf", ah, []string{"Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("acme:"+acme.Key))}, "", 401},
		{"malformed key", "POST", "/v1/invoices/1/pdf", ah, []string{bearer("tk_short")}, "", 401},
		{"unknown well-formed key", "POST", "/v1/invoices/1/pdf", ah, []string{bearer(unknownKey)}, "", 401},
		{"key with trailing garbage", "POST", "/v1/invoices/1/pdf", ah, []string{bearer(acme.Key + "x")}, "", 401},
		{"key of another tenant", "POST", "/v1/invoices/1/pdf", ah, []string{bearer(globex.Key)}, "", 403},
		{"admin token as tenant key", "POST", "/v1/invoices/1/pdf", ah, []string{admin}, "", 401},
		{"bearer scheme lower case", "POST", "/v1/invoices/1/pdf", ah, []string{"Authorization: bearer " + acme.Key}, "", 202},
		// Invoice ids.
		{"id zero", "POST", "/v1/invoices/0/pdf", ah, []string{key}, "", 400},
		{"id negative", "POST", "/v1/invoices/-1/pdf", ah, []string{key}, "", 400},
		{"id with exponent", "POST", "/v1/invoices/1e3/pdf", ah, []string{key}, "", 400},
		{"id hexadecimal", "POST", "/v1/invoices/0x10/pdf", ah, []string{key}, "", 400},
		{"id max int64 (no such invoice)", "POST", "/v1/invoices/9223372036854775807/pdf", ah, []string{key}, "", 404},
		{"render of a missing invoice", "POST", "/v1/invoices/999/pdf", ah, []string{key}, "", 404},
		{"reminder for a missing invoice", "POST", "/v1/invoices/999/reminders", ah, []string{key}, "", 404},
		{"invoice id past the tenant's invoices", "POST", "/v1/invoices/4/pdf", ah, []string{key}, "", 404},
		{"id beyond int64", "POST", "/v1/invoices/9223372036854775808/pdf", ah, []string{key}, "", 400},
		{"id with SQL", "POST", "/v1/invoices/1%3Bdrop%20table%20invoices/pdf", ah, []string{key}, "", 400},
		{"id with a space", "POST", "/v1/invoices/%201/pdf", ah, []string{key}, "", 400},
		{"id in Arabic digits", "POST", "/v1/invoices/%D9%A1/pdf", ah, []string{key}, "", 400},
		{"id dot-dot", "POST", "/v1/invoices/%2e%2e/pdf", ah, []string{key}, "", 400},
		{"download before render", "GET", "/v1/invoices/3/pdf", ah, []string{key}, "", 404},
		// Task ids.
		{"own task", "GET", "/v1/tasks/" + acmeTask, ah, []string{key}, "", 200},
		{"another tenant's task", "GET", "/v1/tasks/" + globexTask, ah, []string{key}, "", 404},
		{"guessed task id", "GET", "/v1/tasks/" + strings.Replace(globexTask, globex.ID, acme.ID, 1) + "9", ah, []string{key}, "", 404},
		{"task id of 5000 bytes", "GET", "/v1/tasks/" + strings.Repeat("x", 5000), ah, []string{key}, "", 404},
		{"task id with a NUL", "GET", "/v1/tasks/%00", ah, []string{key}, "", 404},
		// Methods.
		{"GET on an enqueue route", "GET", "/v1/invoices/1/reminders", ah, []string{key}, "", 405},
		{"PUT on an enqueue route", "PUT", "/v1/invoices/1/pdf", ah, []string{key}, "", 405},
		{"DELETE a task", "DELETE", "/v1/tasks/" + acmeTask, ah, []string{key}, "", 405},
		{"unknown method", "BREW", "/v1/invoices/1/pdf", ah, []string{key}, "", 405},
		{"unknown route", "GET", "/v1/invoices", ah, []string{key}, "", 404},
		// Admin: tokens.
		{"admin without token", "GET", "/admin/tenants", "example.test", nil, "", 401},
		{"admin with wrong token", "GET", "/admin/tenants", "example.test", []string{bearer("wrong")}, "", 401},
		{"admin with a tenant key", "GET", "/admin/tenants", "example.test", []string{key}, "", 401},
		{"admin token prefix", "GET", "/admin/tenants", "example.test", []string{bearer(adminToken[:10])}, "", 401},
		{"dashboard without auth", "GET", "/admin/dashboard/", "example.test", nil, "", 401},
		{"dashboard with basic auth", "GET", "/admin/dashboard/", "example.test", []string{basic}, "", 200},
		// Admin: cross-site requests with an operator's cached credentials.
		{"cross-origin form post to the dashboard", "POST", "/admin/dashboard/api/queues/default:pause", "example.test",
			[]string{basic, "Origin: https://evil.example", "Content-Type: application/x-www-form-urlencoded"}, "a=b", 403},
		{"cross-site delete on the dashboard", "DELETE", "/admin/dashboard/api/queues/default/pending_tasks:batch_delete", "example.test",
			[]string{basic, "Sec-Fetch-Site: cross-site"}, "", 403},
		{"foreign Referer on the dashboard", "POST", "/admin/dashboard/api/queues/default:pause", "example.test",
			[]string{basic, "Referer: https://evil.example/page"}, "", 403},
		{"cross-site write to the admin API", "POST", "/admin/tenants", "example.test", []string{admin, json, "Sec-Fetch-Site: cross-site"}, `{"slug":"initech"}`, 403},
		// Admin: keys.
		{"list keys of an unknown tenant", "GET", "/admin/tenants/tn_nobody/keys", "example.test", []string{admin}, "", 404},
		{"revoke an unknown key", "DELETE", "/admin/tenants/" + acme.ID + "/keys/999999", "example.test", []string{admin}, "", 404},
		{"revoke a key id with SQL", "DELETE", "/admin/tenants/" + acme.ID + "/keys/1%3Bdrop%20table%20x", "example.test", []string{admin}, "", 404},
		{"revoke a negative key id", "DELETE", "/admin/tenants/" + acme.ID + "/keys/-1", "example.test", []string{admin}, "", 404},
		{"revoke a key id beyond int64", "DELETE", "/admin/tenants/" + acme.ID + "/keys/99999999999999999999", "example.test", []string{admin}, "", 404},
		// Admin: bodies and parameters.
		{"provision without body", "POST", "/admin/tenants", "example.test", []string{admin, json}, "", 400},
		{"provision with broken JSON", "POST", "/admin/tenants", "example.test", []string{admin, json}, `{"slug":`, 400},
		{"provision with an array", "POST", "/admin/tenants", "example.test", []string{admin, json}, `[{"slug":"initech"}]`, 400},
		{"provision with an unknown field", "POST", "/admin/tenants", "example.test", []string{admin, json}, `{"slug":"initech","schema":"public"}`, 400},
		{"provision with trailing data", "POST", "/admin/tenants", "example.test", []string{admin, json}, `{"slug":"initech"} {"slug":"x"}`, 400},
		{"provision with SQL in the slug", "POST", "/admin/tenants", "example.test", []string{admin, json}, `{"slug":"x'; drop schema tenant_acme; --"}`, 400},
		{"provision with quote in the slug", "POST", "/admin/tenants", "example.test", []string{admin, json}, `{"slug":"a\"; drop schema x; --"}`, 400},
		{"provision a reserved slug", "POST", "/admin/tenants", "example.test", []string{admin, json}, `{"slug":"admin"}`, 400},
		{"provision a path slug", "POST", "/admin/tenants", "example.test", []string{admin, json}, `{"slug":"../etc"}`, 400},
		{"provision a taken slug", "POST", "/admin/tenants", "example.test", []string{admin, json}, `{"slug":"acme"}`, 409},
		{"provision with control characters", "POST", "/admin/tenants", "example.test", []string{admin, json}, `{"slug":"initech","name":"a\u0000b"}`, 400},
		{"provision with a 10 KB name", "POST", "/admin/tenants", "example.test", []string{admin, json}, `{"slug":"initech","name":"` + strings.Repeat("n", 10000) + `"}`, 400},
		{"body over 1 MiB", "POST", "/admin/tenants", "example.test", []string{admin, json}, `{"slug":"initech","name":"` + strings.Repeat("n", 2<<20) + `"}`, 413},
		{"Content-Length of 1 TB", "POST", "/admin/tenants", "example.test", []string{admin, json, "Content-Length: 1000000000000"}, `{}`, 413},
		{"chunked body over 1 MiB", "POST", "/admin/tenants", "example.test", []string{admin, json, "Transfer-Encoding: chunked"}, chunked(`{"slug":"initech","name":"` + strings.Repeat("n", 2<<20) + `"}`), 413},
		{"tenant id path traversal", "GET", "/admin/tenants/..%2f..%2fetc%2fpasswd", "example.test", []string{admin}, "", 404},
		{"tenant id with SQL", "GET", "/admin/tenants/x'%20or%20'1'='1", "example.test", []string{admin}, "", 404},
		{"delete an unknown tenant", "DELETE", "/admin/tenants/tn_nobody", "example.test", []string{admin}, "", 404},
		{"page limit too large", "GET", "/admin/tenants?limit=100000", "example.test", []string{admin}, "", 400},
		{"unknown status filter", "GET", "/admin/tenants?status=evil", "example.test", []string{admin}, "", 400},
		{"page cursor with SQL", "GET", "/admin/tenants?after=%27%3Bdrop", "example.test", []string{admin}, "", 400},
		// Headers.
		{"X-Request-Id with a log injection", "GET", "/healthz", "example.test", []string{"X-Request-Id: a b\tc{\"level\":\"ERROR\"}"}, "", 200},
		{"header of 2 MB", "GET", "/healthz", "example.test", []string{"X-Big: " + strings.Repeat("h", 2<<20)}, "", 431},
	}
	if len(cases) < 40 {
		t.Fatalf("only %d cases", len(cases))
	}

	failures := 0
	for _, c := range cases {
		resp, err := rawRequest(s.enqueue.addr, c.request())
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if resp.status != c.want {
			failures++
			t.Errorf("%s: %s %.80s (Host %.60q): status %d, want %d; body %.300s", c.name, c.method, c.target, c.host, resp.status, c.want, resp.body)
		}
		if resp.status >= 500 {
			t.Errorf("%s: server error %d", c.name, resp.status)
		}
		if c.name == "X-Request-Id with a log injection" {
			if id := resp.header.Get("X-Request-Id"); strings.ContainsAny(id, " \t{\"") {
				t.Errorf("X-Request-Id %q echoed unsanitised", id)
			}
		}
	}
	t.Logf("%d hostile requests sent, %d with an unexpected status", len(cases), failures)

	// The service survived and still serves; it never panicked; no schema
	// was touched and no tenant was created by a hostile body.
	if !s.enqueue.running() {
		t.Fatalf("the enqueue service exited")
	}
	if err := s.enqueue.waitStatus("/readyz", http.StatusOK, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if st, _, err := s.post(ctx, acme, "pdf", 3); err != nil || st != http.StatusAccepted {
		t.Errorf("a good request after the hostile ones: status %d, %v", st, err)
	}
	for _, word := range []string{"panic", "goroutine "} {
		if s.enqueue.logContains(word) {
			t.Errorf("the enqueue service logged %q", word)
		}
	}
	var tenantsN, schemasN, invoicesN int
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM tenancy.tenants`).Scan(&tenantsN); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname LIKE 'tenant\_%'`).Scan(&schemasN); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{acme.Schema, "invoices"}.Sanitize()).Scan(&invoicesN); err != nil {
		t.Fatal(err)
	}
	if tenantsN != 2 || schemasN != 2 || invoicesN != 3 {
		t.Errorf("after the hostile requests: %d tenants, %d tenant schemas, %d acme invoices; want 2, 2, 3", tenantsN, schemasN, invoicesN)
	}
	// No cross-site request paused a queue; no key was revoked.
	if q, err := s.inspector.GetQueueInfo(tasks.QueueDefault); err != nil || q.Paused {
		t.Errorf("default queue after the hostile requests: %+v, %v", q, err)
	}
	if st, _, err := s.post(ctx, acme, "pdf", 1); err != nil || st != http.StatusAccepted {
		t.Errorf("acme's key after the hostile requests: status %d, %v", st, err)
	}
}

// chunked encodes body as one chunk of HTTP/1.1 chunked transfer coding.
func chunked(body string) string {
	return fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
}
