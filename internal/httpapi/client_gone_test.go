package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/storage"
)

// stallCatalog holds every API key look-up until its request's context
// ends, and says when one has started.
type stallCatalog struct {
	storage.Catalog
	started chan struct{}
}

func (c stallCatalog) TenantForAPIKey(ctx context.Context, _ string) (string, error) {
	c.started <- struct{}{}
	<-ctx.Done()
	return "", ctx.Err()
}

// TestClientGoneIsNotAnInternalError: a client that gives up on its
// request (its own timeout, a proxy closing the connection) cancels the
// request's context, and the look-up under way fails with
// context.Canceled. That was answered, logged and counted as 500
// "internal error", with an error-level "http handler error" line: a
// server fault to every 5xx alert and dashboard, for a request nobody
// waits for. It is the client's doing: counted as 499 (the status
// proxies log for it), logged without an error.
func TestClientGoneIsNotAnInternalError(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	b := setup(t, func(o *httpapi.Options) { o.Catalog = stallCatalog{Catalog: o.Catalog, started: started} })
	acme := b.provisioned(t, "acme")
	b.logs.Reset()

	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.srv.URL+"/v1/invoices/1/pdf", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = acme.host()
	req.Header.Set("Authorization", "Bearer "+acme.key)
	go func() {
		<-started
		cancel()
	}()
	if resp, err := b.srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("the cancelled request got an answer")
	}
	deadline := time.Now().Add(time.Minute) // a bound for the failure message, not a measurement
	for !strings.Contains(b.logs.String(), `"msg":"http request"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no access log line for the cancelled request:\n%s", b.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	logs := b.logs.String()
	if strings.Contains(logs, `"status":500`) || strings.Contains(logs, `"level":"ERROR"`) {
		t.Errorf("a request its client gave up on is logged as a server error:\n%s", logs)
	}
	if !strings.Contains(logs, `"status":499`) {
		t.Errorf("want the access log to say 499 (client closed the request):\n%s", logs)
	}
}
