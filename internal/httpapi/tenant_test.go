package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/httpapi"
)

func TestTenantHostResolution(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")

	tests := []struct {
		name string
		host string
		want int
	}{
		{"exact", "acme.example.com", http.StatusAccepted},
		{"with port", "acme.example.com:8443", http.StatusAccepted},
		{"uppercase is lowercased", "ACME.example.com", http.StatusAccepted},
		{"fully qualified", "acme.example.com.", http.StatusAccepted},
		{"other domain ending in ours", "acme.example.com.evil.com", http.StatusBadRequest},
		{"empty label", "acme..example.com", http.StatusBadRequest},
		{"nested label", "x.acme.example.com", http.StatusBadRequest},
		{"ip", "127.0.0.1", http.StatusBadRequest},
		{"ip with port", "127.0.0.1:8080", http.StatusBadRequest},
		{"ipv6", "[::1]:8080", http.StatusBadRequest},
		{"path in host", "acme.example.com/x", http.StatusBadRequest},
		{"nul", "acme\x00.example.com", http.StatusBadRequest},
		{"nul after", "acme.example.com\x00", http.StatusBadRequest},
		{"empty", "", http.StatusBadRequest},
		{"bare suffix", "example.com", http.StatusBadRequest},
		{"reserved label", "admin.example.com", http.StatusBadRequest},
		{"invalid slug", "a_b.example.com", http.StatusBadRequest},
		{"long", strings.Repeat("a", 5000) + ".example.com", http.StatusBadRequest},
		{"well-formed unknown tenant", "globex.example.com", http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := b.serve(t, http.MethodPost, tc.host, "/v1/invoices/7/pdf", acme.key)
			if r.status != tc.want {
				t.Fatalf("Host %q: status %d, want %d; body %s", tc.host, r.status, tc.want, r.body)
			}
			if r.status != http.StatusAccepted {
				_ = r.errorText(t)
			}
		})
	}

	// The same through a real listener for the Hosts an HTTP client sends.
	for _, host := range []string{"ACME.example.com", "acme.example.com.evil.com", "127.0.0.1", "acme..example.com"} {
		r := b.do(t, request{method: http.MethodPost, host: host, path: "/v1/invoices/7/pdf", bearer: acme.key})
		want := http.StatusBadRequest
		if host == "ACME.example.com" {
			want = http.StatusAccepted
		}
		if r.status != want {
			t.Errorf("over HTTP, Host %q: status %d, want %d; body %s", host, r.status, want, r.body)
		}
	}
}

// TestTenantHostNotASCII: a Host that is not ASCII names no tenant, even
// when Unicode lowercasing would make it one (U+212A KELVIN SIGN lowercases
// to "k"). net/http refuses such a Host header, but not the host of an
// absolute-form request target, which becomes the request's Host.
func TestTenantHostNotASCII(t *testing.T) {
	t.Parallel()
	b := setup(t)
	kcme := b.active(t, "kcme")

	for _, target := range []string{"http://\u212Acme.example.com/v1/invoices/7/pdf", "http://%E2%84%AAcme.example.com/v1/invoices/7/pdf"} {
		conn, err := net.Dial("tcp", b.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: kcme.example.com\r\nAuthorization: Bearer %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", target, kcme.key)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			_ = conn.Close()
			t.Fatalf("%s: %v", target, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		_ = conn.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("target %q: status %d, want 400; body %s", target, resp.StatusCode, body)
		}
	}
	// The tenant's own ASCII host still works.
	wantStatus(t, b.do(t, request{method: http.MethodPost, host: kcme.host(), path: "/v1/invoices/7/pdf", bearer: kcme.key}), http.StatusAccepted)
}

func TestTenantHeaderFallback(t *testing.T) {
	t.Parallel()
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow=%v", allow), func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(o *httpapi.Options) { o.AllowTenantHeader = allow })
			acme := b.active(t, "acme")
			hdr := http.Header{"X-Tenant": {"acme"}}

			r := b.do(t, request{method: http.MethodPost, host: "localhost:8080", path: "/v1/invoices/1/pdf", bearer: acme.key, header: hdr})
			want := http.StatusBadRequest
			if allow {
				want = http.StatusAccepted
			}
			wantStatus(t, r, want)

			// An invalid X-Tenant never resolves.
			r = b.do(t, request{method: http.MethodPost, host: "localhost", path: "/v1/invoices/1/pdf", bearer: acme.key,
				header: http.Header{"X-Tenant": {`a"; drop schema x; --`}}})
			wantStatus(t, r, http.StatusBadRequest)

			// A Host naming a tenant wins over the header.
			b.active(t, "globex")
			r = b.do(t, request{method: http.MethodPost, host: "globex.example.com", path: "/v1/invoices/1/pdf", bearer: acme.key, header: hdr})
			wantStatus(t, r, http.StatusForbidden)
		})
	}
}

func TestTenantAuth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	globex := b.active(t, "globex")
	path := "/v1/invoices/1/pdf"

	for _, auth := range []string{"", "Bearer", "Bearer ", "Basic " + acme.key, "Token " + acme.key, "Bearer not-a-key", "Bearer tk_short"} {
		r := b.do(t, request{method: http.MethodPost, host: acme.host(), path: path, auth: auth})
		if r.status != http.StatusUnauthorized {
			t.Errorf("Authorization %q: status %d, want 401", auth, r.status)
			continue
		}
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("Authorization %q: WWW-Authenticate %q", auth, r.header.Get("WWW-Authenticate"))
		}
		_ = r.errorText(t)
	}

	// A well-formed key nobody owns.
	unknown := "tk_" + strings.Repeat("A", 43)
	r := b.do(t, request{method: http.MethodPost, host: acme.host(), path: path, bearer: unknown})
	wantStatus(t, r, http.StatusUnauthorized)

	// Another tenant's valid key.
	r = b.do(t, request{method: http.MethodPost, host: acme.host(), path: path, bearer: globex.key})
	wantStatus(t, r, http.StatusForbidden)
	if got := r.errorText(t); !strings.Contains(got, "another tenant") && !strings.Contains(got, "does not belong") {
		t.Errorf("403 error %q", got)
	}
	// Scheme is case-insensitive.
	r = b.do(t, request{method: http.MethodPost, host: acme.host(), path: path, auth: "bearer " + acme.key})
	wantStatus(t, r, http.StatusAccepted)

	// A revoked key stops working.
	if err := b.catalog.RevokeAPIKeys(context.Background(), acme.ID); err != nil {
		t.Fatal(err)
	}
	r = b.do(t, request{method: http.MethodPost, host: acme.host(), path: path, bearer: acme.key})
	wantStatus(t, r, http.StatusUnauthorized)
}

// P14 in docs/architecture.md: random subdomains must not cost a catalog query each.
func TestUnknownSubdomainsAreCached(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")

	before := b.pg.Queries()
	for range 20 {
		// Without a key, no catalog look-up happens at all.
		r := b.do(t, request{method: http.MethodPost, host: "random-sub.example.com", path: "/v1/invoices/1/pdf"})
		wantStatus(t, r, http.StatusUnauthorized)
	}
	if got := b.pg.Queries() - before; got != 0 {
		t.Fatalf("keyless requests to an unknown subdomain made %d catalog queries", got)
	}
	for range 50 {
		r := b.do(t, request{method: http.MethodPost, host: "random-sub.example.com", path: "/v1/invoices/1/pdf", bearer: acme.key})
		wantStatus(t, r, http.StatusNotFound)
		if got := r.errorText(t); got != "unknown tenant" {
			t.Fatalf("error %q", got)
		}
	}
	if got := b.pg.Queries() - before; got > 2 {
		t.Fatalf("50 requests to one unknown subdomain made %d catalog queries, want at most 2 (the key once, the unknown slug once: negative cache)", got)
	}
}

func TestTenantStatusGates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	prov := b.provisioned(t, "fresh")
	r := b.do(t, request{method: http.MethodPost, host: prov.host(), path: "/v1/invoices/1/pdf", bearer: prov.key})
	wantStatus(t, r, http.StatusConflict)

	acme := b.active(t, "acme")
	call := func() response {
		return b.do(t, request{method: http.MethodPost, host: acme.host(), path: "/v1/invoices/1/pdf", bearer: acme.key})
	}
	wantStatus(t, call(), http.StatusAccepted)

	wantStatus(t, b.admin(t, http.MethodPost, "/admin/tenants/"+acme.ID+"/suspend", ""), http.StatusOK)
	r = call()
	wantStatus(t, r, http.StatusForbidden)
	if got := r.errorText(t); got != "tenant suspended" {
		t.Fatalf("error %q", got)
	}
	wantStatus(t, b.admin(t, http.MethodPost, "/admin/tenants/"+acme.ID+"/resume", ""), http.StatusOK)
	wantStatus(t, call(), http.StatusAccepted)

	wantStatus(t, b.admin(t, http.MethodDelete, "/admin/tenants/"+acme.ID, ""), http.StatusAccepted)
	for _, rq := range []request{
		{method: http.MethodPost, path: "/v1/invoices/1/pdf"},
		{method: http.MethodPost, path: "/v1/invoices/1/reminders"},
		{method: http.MethodGet, path: "/v1/invoices/1/pdf"},
		{method: http.MethodGet, path: "/v1/tasks/x"},
	} {
		rq.host, rq.bearer = acme.host(), acme.key
		r := b.do(t, rq)
		wantStatus(t, r, http.StatusNotFound)
		if got := r.errorText(t); got != "unknown tenant" {
			t.Fatalf("%s %s after delete: error %q", rq.method, rq.path, got)
		}
	}
}
