package integration

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// adminAttempt sends GET path to p with the given Authorization header
// value and returns the status and the Retry-After header.
func adminAttempt(t *testing.T, p *proc, path, authorization string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, p.url(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", authorization)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s: GET %s: %v", p.name, path, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

func basicAuth(password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+password))
}

// TestAdminLoginGuessesAreRateLimited: against the built enqueue service
// (AUTH_FAILURES_PER_MINUTE=3), wrong admin tokens on the admin API and
// wrong dashboard passwords from one client address are answered 401 three
// times, then 429 with Retry-After, also for the right token, on the API
// and the dashboard alike. The tenant routes from that address, a separate
// budget, keep working. The limit is per process: another replica has its
// own (README, "HTTP API").
func TestAdminLoginGuessesAreRateLimited(t *testing.T) {
	t.Parallel()
	const perMinute = 3
	s := newStack(t, stackOptions{env: map[string]string{"AUTH_FAILURES_PER_MINUTE": strconv.Itoa(perMinute)}})
	tn := s.provision([]string{"guarded"}, tenantName)[0]
	second := s.addEnqueue("enqueue-2")

	for _, c := range []struct {
		name  string
		p     *proc
		path  string
		guess func(i int) string
		right string
	}{
		{"admin API bearer token", s.enqueue, "/admin/tenants", func(i int) string { return fmt.Sprintf("Bearer guess-%d", i) }, "Bearer " + adminToken},
		{"dashboard password", second, "/admin/dashboard/", func(i int) string { return basicAuth(fmt.Sprintf("guess-%d", i)) }, basicAuth(adminToken)},
	} {
		for i := range perMinute {
			if st, _ := adminAttempt(t, c.p, c.path, c.guess(i)); st != http.StatusUnauthorized {
				t.Fatalf("%s: guess %d: %d, want 401", c.name, i+1, st)
			}
		}
		st, retry := adminAttempt(t, c.p, c.path, c.guess(perMinute))
		if n, err := strconv.Atoi(retry); st != http.StatusTooManyRequests || err != nil || n < 1 {
			t.Errorf("%s: guess %d: %d with Retry-After %q, want 429 with Retry-After", c.name, perMinute+1, st, retry)
		}
		if st, _ := adminAttempt(t, c.p, c.path, c.right); st != http.StatusTooManyRequests {
			t.Errorf("%s: the right credentials from the limited address: %d, want 429", c.name, st)
		}
		// The API and the dashboard share the address's admin budget.
		if st, _ := adminAttempt(t, c.p, "/admin/dashboard/", basicAuth(adminToken)); st != http.StatusTooManyRequests {
			t.Errorf("%s: the dashboard from the limited address: %d, want 429", c.name, st)
		}
		if st, _ := adminAttempt(t, c.p, "/admin/tenants", "Bearer "+adminToken); st != http.StatusTooManyRequests {
			t.Errorf("%s: the admin API from the limited address: %d, want 429", c.name, st)
		}
		// Tenant authentication is a separate budget.
		if got := authStatus(t, c.p, tn, tn.Key); got != http.StatusNotFound {
			t.Errorf("%s: the tenant's key from the address limited for admin logins: %d, want it accepted", c.name, got)
		}
	}
	// The guesses are logged for operators, without the guessed secret.
	for _, p := range []*proc{s.enqueue, second} {
		if log := p.logText(); strings.Contains(log, "guess-") || strings.Contains(log, adminToken) {
			t.Errorf("%s logs a presented admin credential", p.name)
		}
	}
}

// TestShortAdminTokenRefused: both binaries refuse to start with an
// ADMIN_TOKEN shorter than config.MinAdminTokenLen (32) characters outside
// the dev stack, naming the variable and never printing the token.
func TestShortAdminTokenRefused(t *testing.T) {
	t.Parallel()
	short := "short-admin-token-" + strings.Repeat("x", config.MinAdminTokenLen-19) // 31 characters
	env := map[string]string{
		"DATABASE_URL":  "postgres://nobody@127.0.0.1:1/none",
		"REDIS_URL":     "redis://127.0.0.1:1",
		"ADMIN_TOKEN":   short,
		"DOMAIN_SUFFIX": domainSuffix,
	}
	for _, c := range []struct{ name, pkg string }{{"worker", workerPkg}, {"enqueue", enqueuePkg}} {
		p := startProc(t, c.name, testenv.BuildBinary(t, c.pkg), env)
		p.mu.Lock()
		done := p.done
		p.mu.Unlock()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("%s with a %d-character ADMIN_TOKEN still runs after 60 s", c.name, len(short))
		}
		log := p.logText()
		if p.exitErr() == nil {
			t.Errorf("%s with a %d-character ADMIN_TOKEN exited 0", c.name, len(short))
		}
		if !strings.Contains(log, "ADMIN_TOKEN") || !strings.Contains(log, strconv.Itoa(config.MinAdminTokenLen)) {
			t.Errorf("%s: the refusal does not name ADMIN_TOKEN and its minimum length:\n%s", c.name, log)
		}
		if strings.Contains(log, short) {
			t.Errorf("%s prints the refused token", c.name)
		}
	}
}
