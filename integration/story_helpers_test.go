package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Timeouts of the story.
const (
	// storyEventually bounds any "eventually" condition. Some include a
	// task retried after a tenant was not ready (15 to 30 s by default),
	// e.g. a destroy whose worker still had the tenant cached as active,
	// besides the work itself on a loaded machine.
	storyEventually   = 120 * time.Second
	storyPollInterval = 200 * time.Millisecond
	storyStopTimeout  = 40 * time.Second // SIGTERM to exit (SHUTDOWN_TIMEOUT is 10s)
)

// storyStop sends SIGTERM to p and waits up to timeout for the exit; a
// process still running then is killed. It returns the exit error (nil for
// exit status 0) or why the process did not stop in time.
func storyStop(p *proc, timeout time.Duration) error {
	if !p.running() {
		return fmt.Errorf("%s was not running at SIGTERM (exit: %v)", p.name, p.exitErr())
	}
	exitErr, _, exited := p.signal(syscall.SIGTERM, timeout)
	if !exited {
		p.kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM; killed", p.name, timeout)
	}
	return exitErr
}

// storyResponse is one HTTP answer.
type storyResponse struct {
	status int
	header http.Header
	body   []byte
}

// decode unmarshals the body into v, failing the test when it is not JSON.
func (r storyResponse) decode(t *testing.T, what string, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("%s: body is not the expected JSON (%v): %s", what, err, r.body)
	}
}

func (r storyResponse) String() string {
	return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body))
}

// storyBearer and storyBasic build Authorization header values.
func storyBearer(token string) string { return "Bearer " + token }

func storyBasic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// storyClient talks to the enqueue service at addr with any Host header.
type storyClient struct {
	addr   string // 127.0.0.1:port
	port   string
	client *http.Client
}

func newStoryClient(addr string) *storyClient {
	_, port, _ := net.SplitHostPort(addr)
	return &storyClient{addr: addr, port: port, client: &http.Client{Timeout: 15 * time.Second}}
}

// host is name with the service's port, as a browser would send it.
func (c *storyClient) host(name string) string { return name + ":" + c.port }

// send makes one request; host "" leaves the Host header as the address,
// auth "" sends no Authorization header, body nil sends none.
func (c *storyClient) send(method, path, host, auth string, body any) (storyResponse, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return storyResponse{}, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.client.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.addr+path, rd)
	if err != nil {
		return storyResponse{}, err
	}
	if host != "" {
		req.Host = host
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return storyResponse{}, fmt.Errorf("%s %s (Host %s): %w", method, path, host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return storyResponse{}, fmt.Errorf("%s %s (Host %s): read body: %w", method, path, host, err)
	}
	return storyResponse{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// do is send that fails the test on a transport error.
func (c *storyClient) do(t *testing.T, method, path, host, auth string, body any) storyResponse {
	t.Helper()
	r, err := c.send(method, path, host, auth, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// expect is do that also fails the test unless the status is want.
func (c *storyClient) expect(t *testing.T, want int, method, path, host, auth string, body any) storyResponse {
	t.Helper()
	r := c.do(t, method, path, host, auth, body)
	if r.status != want {
		t.Fatalf("%s %s (Host %s): got %s, want status %d", method, path, host, r, want)
	}
	return r
}

// errStoryGiveUp wraps a condition's error that no amount of waiting fixes:
// story.wait fails at once on it.
var errStoryGiveUp = errors.New("giving up")

// storyPDFText extracts the text of a PDF with pdftotext (poppler-utils).
func storyPDFText(t *testing.T, name string, pdf []byte) string {
	t.Helper()
	bin, err := exec.LookPath("pdftotext")
	if err != nil {
		t.Fatalf("pdftotext (poppler-utils) is needed to read the rendered PDFs: %v", err)
	}
	path := filepath.Join(t.TempDir(), name+".pdf")
	if err := os.WriteFile(path, pdf, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-layout", "-enc", "UTF-8", path, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext %s: %v\n%s", name, err, out)
	}
	return string(out)
}
