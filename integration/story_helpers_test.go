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
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Timeouts of the story.
const (
	storyEventually   = 60 * time.Second // any "eventually" condition
	storyPollInterval = 200 * time.Millisecond
	storyStopTimeout  = 40 * time.Second // SIGTERM to exit (SHUTDOWN_TIMEOUT is 10s)
	storyLogTail      = 16 << 10
)

// storyProc is a built binary running as a child process of the test, its
// stdout and stderr appended to a log file that is printed when the test
// fails. It is stopped (SIGTERM, then SIGKILL) in t.Cleanup.
type storyProc struct {
	name    string
	addr    string // HTTP_ADDR
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error // valid once done is closed
}

// storyFreeAddr returns a loopback address whose port was free a moment ago.
func storyFreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free loopback port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// storyEnviron is a child's whole environment: only PATH, HOME and TMPDIR
// of the test's own, so a DATABASE_URL in the developer's shell cannot
// redirect a process under test, then env in sorted order.
func storyEnviron(env map[string]string) []string {
	var out []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			out = append(out, k+"="+v)
		}
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+env[k])
	}
	return out
}

// storyStart starts bin with env and args. env must hold HTTP_ADDR.
func storyStart(t *testing.T, name, bin string, env map[string]string, args ...string) *storyProc {
	t.Helper()
	p := &storyProc{name: name, addr: env["HTTP_ADDR"], logPath: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatalf("%s: create log: %v", name, err)
	}
	defer logFile.Close()
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = storyEnviron(env)
	p.cmd.Stdout = logFile
	p.cmd.Stderr = logFile
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: start %s: %v", name, bin, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.running() {
			if err := p.stop(storyStopTimeout); err != nil {
				t.Errorf("%s: stop in cleanup: %v", name, err)
			}
		}
		if t.Failed() {
			t.Logf("--- log of %s (%s), last %d bytes:\n%s", name, p.logPath, storyLogTail, p.logTail(storyLogTail))
		}
	})
	return p
}

func (p *storyProc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// exited returns an error describing the process's exit, or nil while it
// runs.
func (p *storyProc) exited() error {
	if p.running() {
		return nil
	}
	return fmt.Errorf("%s exited unexpectedly (%v); last log lines:\n%s", p.name, p.waitErr, p.logTail(4<<10))
}

// stop sends SIGTERM and waits up to timeout for the exit, then kills the
// process group. It returns the exit error (nil for exit status 0) or why
// the process did not stop in time.
func (p *storyProc) stop(timeout time.Duration) error {
	if !p.running() {
		return p.waitErr
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.waitErr
	case <-time.After(timeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not exit within %v of SIGTERM; killed", p.name, timeout)
	}
}

func (p *storyProc) logText() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	return string(b)
}

func (p *storyProc) logTail(n int) string { return storyTail(p.logText(), n) }

// waitReady polls GET /readyz until it answers 200, failing at once when
// the process exits.
func (p *storyProc) waitReady(t *testing.T) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(storyEventually)
	last := "no answer yet"
	for {
		if err := p.exited(); err != nil {
			t.Fatalf("waiting for %s /readyz: %v", p.name, err)
		}
		resp, err := client.Get("http://" + p.addr + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s /readyz not 200 within %v; last: %s", p.name, storyEventually, last)
		}
		time.Sleep(storyPollInterval)
	}
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

// errStoryGiveUp wraps a condition's error that no amount of waiting fixes.
var errStoryGiveUp = errors.New("giving up")

// storyWait polls cond until it returns nil, for up to storyEventually.
// It fails the test with cond's last error on timeout, at once when cond's
// error wraps errStoryGiveUp, and at once when one of procs has exited.
func storyWait(t *testing.T, what string, procs []*storyProc, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(storyEventually)
	for {
		for _, p := range procs {
			if err := p.exited(); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
		err := cond()
		if err == nil {
			return
		}
		if errors.Is(err, errStoryGiveUp) {
			t.Fatalf("%s: %v", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %v", what, storyEventually, err)
		}
		time.Sleep(storyPollInterval)
	}
}

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
