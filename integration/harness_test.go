package integration

import (
	"bytes"
	"context"
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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/childproc"
)

// Module paths of the binaries under test.
const (
	workerPkg  = "github.com/invoicing/tenantworker/cmd/worker"
	enqueuePkg = "github.com/invoicing/tenantworker/cmd/enqueue"
)

// readyTimeout bounds how long a started process may take to answer
// /readyz with 200.
const readyTimeout = 60 * time.Second

// proc is one of the project's binaries running as a child process of the
// test: its own process group, killed with the test binary (Pdeathsig), its
// stdout and stderr appended to a log file that is printed when the test
// fails. HTTP_ADDR is always set, to a free loopback port that survives
// restarts.
type proc struct {
	t       testing.TB
	name    string
	bin     string
	args    []string
	env     map[string]string
	addr    string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	err    error // valid after done is closed
	starts int
}

// startProc starts bin with env (plus PATH, HOME and HTTP_ADDR) and args,
// and stops it in t.Cleanup. It does not wait for readiness: see waitReady.
func startProc(t testing.TB, name, bin string, env map[string]string, args ...string) *proc {
	t.Helper()
	p := newProc(t, name, bin, env, args...)
	p.start()
	return p
}

// newProc prepares a process without starting it.
func newProc(t testing.TB, name, bin string, env map[string]string, args ...string) *proc {
	t.Helper()
	e := make(map[string]string, len(env)+1)
	for k, v := range env {
		e[k] = v
	}
	if e["HTTP_ADDR"] == "" {
		e["HTTP_ADDR"] = freeAddr(t)
	}
	p := &proc{
		t: t, name: name, bin: bin, args: args, env: e, addr: e["HTTP_ADDR"],
		logPath: filepath.Join(t.TempDir(), name+".log"),
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- log of %s (%s), last 12 KiB:\n%s", p.name, p.logPath, p.logTail(12<<10))
		}
	})
	return p
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	port, err := childproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// environ is the child's whole environment: nothing of the test's own
// environment leaks in except PATH, HOME and TMPDIR, so a DATABASE_URL set
// in the developer's shell cannot redirect a process under test.
func (p *proc) environ() []string {
	out := []string{}
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			out = append(out, k+"="+v)
		}
	}
	keys := make([]string, 0, len(p.env))
	for k := range p.env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+p.env[k])
	}
	return out
}

// start starts the process; it is an error to start a running one.
func (p *proc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !isDone(p.done) {
		p.t.Fatalf("%s: start: already running (pid %d)", p.name, p.cmd.Process.Pid)
	}
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatalf("%s: open log: %v", p.name, err)
	}
	defer logFile.Close()
	p.starts++
	fmt.Fprintf(logFile, "=== harness: start #%d of %s at %s\n", p.starts, p.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = p.environ()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("%s: start %s: %v", p.name, p.bin, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
}

func isDone(ch chan struct{}) bool {
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// running reports whether the process is alive.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !isDone(p.done)
}

// kill sends SIGKILL to the process group and waits for the exit. Killing a
// stopped process does nothing.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || isDone(done) {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// signal sends sig to the process (not its group) and waits up to timeout
// for it to exit. It returns the exit error (nil for status 0), how long the
// exit took, and whether it exited in time; a process still running after
// timeout is left running.
func (p *proc) signal(sig syscall.Signal, timeout time.Duration) (exitErr error, took time.Duration, exited bool) {
	p.t.Helper()
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || isDone(done) {
		p.t.Fatalf("%s: signal %v: not running", p.name, sig)
	}
	start := time.Now()
	if err := cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s: signal %v: %v", p.name, sig, err)
	}
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.err, time.Since(start), true
	case <-time.After(timeout):
		return nil, time.Since(start), false
	}
}

// url returns http://HTTP_ADDR + path.
func (p *proc) url(path string) string { return "http://" + p.addr + path }

// waitReady polls GET /readyz until it answers 200, failing the test when
// the process exits or readyTimeout passes.
func (p *proc) waitReady() {
	p.t.Helper()
	if err := p.waitStatus("/readyz", http.StatusOK, readyTimeout); err != nil {
		p.t.Fatalf("%s: not ready: %v\nlog tail:\n%s", p.name, err, p.logTail(6<<10))
	}
}

// waitStatus polls GET path until it answers want, the process exits, or
// timeout passes.
func (p *proc) waitStatus(path string, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := "no answer yet"
	for time.Now().Before(deadline) {
		p.mu.Lock()
		done := p.done
		p.mu.Unlock()
		if isDone(done) {
			return fmt.Errorf("process exited (%v) while waiting for %s %d", p.exitErr(), path, want)
		}
		status, body, err := httpDo(context.Background(), http.MethodGet, p.url(path), "", "", nil)
		switch {
		case err != nil:
			last = err.Error()
		case status == want:
			return nil
		default:
			last = fmt.Sprintf("%d %s", status, bytes.TrimSpace(body))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("GET %s did not answer %d within %s; last: %s", path, want, timeout, last)
}

func (p *proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// logText returns the whole log.
func (p *proc) logText() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(read log %s: %v)", p.logPath, err)
	}
	return string(b)
}

// logTail returns the last n bytes of the log.
func (p *proc) logTail(n int) string {
	s := p.logText()
	if len(s) > n {
		return "...\n" + s[len(s)-n:]
	}
	return s
}

// httpClient is shared by every request of the tests; no proxies.
var httpClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, DisableCompression: true},
}

// httpDo sends one request to url with an optional Host header, bearer
// token and body, and returns the status and body.
func httpDo(ctx context.Context, method, url, host, token string, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return 0, nil, err
	}
	if host != "" {
		req.Host = host
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, b, fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, b, nil
}

// eventually polls cond every interval until it returns nil or timeout
// passes, then fails the test with cond's last error.
func eventually(t testing.TB, timeout, interval time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(interval)
	}
	t.Fatalf("%s: not reached within %s: %v", what, timeout, err)
}

// errNotYet is returned by eventually conditions that are simply not there
// yet.
var errNotYet = errors.New("not yet")

// logContains reports whether the process log contains s.
func (p *proc) logContains(s string) bool { return strings.Contains(p.logText(), s) }

// taskStat summarises the "task finished" lines of one task type.
type taskStat struct {
	n        int
	outcomes map[string]int
	total    time.Duration
}

// taskSummary reads the worker's JSON log ("task finished" lines of the
// log middleware) and returns per task type the count, outcomes and total
// handler time.
func (p *proc) taskSummary() map[string]*taskStat {
	out := map[string]*taskStat{}
	for _, line := range strings.Split(p.logText(), "\n") {
		if !strings.Contains(line, `"task finished"`) {
			continue
		}
		var rec struct {
			Type     string `json:"task_type"`
			Duration int64  `json:"duration"`
			Outcome  string `json:"outcome"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Type == "" {
			continue
		}
		st := out[rec.Type]
		if st == nil {
			st = &taskStat{outcomes: map[string]int{}}
			out[rec.Type] = st
		}
		st.n++
		st.outcomes[rec.Outcome]++
		st.total += time.Duration(rec.Duration)
	}
	return out
}

// taskRun is one handler run of a task attempt, from a "task finished"
// line of a worker's log.
type taskRun struct {
	id         string
	retry      int
	start, end time.Time
}

// taskRuns reads the worker's JSON log and returns the handler runs of
// the tenant's tasks ("" for every task's). A run's end is the line's time and its start that
// minus the logged duration: both lie within the time the handler ran (the
// duration is measured before the line's time is taken), and so within
// the time the fair dispatcher counted the task as admitted and
// unfinished (its completion report is sent after the line is logged).
// The worker processes share the machine's clock, so runs of several
// workers can be compared.
func (p *proc) taskRuns(tenantID string) []taskRun {
	var out []taskRun
	for _, line := range strings.Split(p.logText(), "\n") {
		if !strings.Contains(line, `"task finished"`) || (tenantID != "" && !strings.Contains(line, tenantID)) {
			continue
		}
		var rec struct {
			Time     time.Time `json:"time"`
			TaskID   string    `json:"task_id"`
			TenantID string    `json:"tenant_id"`
			Retry    int       `json:"retry"`
			Duration int64     `json:"duration"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || (tenantID != "" && rec.TenantID != tenantID) || rec.Time.IsZero() {
			continue
		}
		out = append(out, taskRun{id: rec.TaskID, retry: rec.Retry, start: rec.Time.Add(-time.Duration(rec.Duration)), end: rec.Time})
	}
	return out
}

// maxOverlap returns the most runs that overlap at one instant, and that
// instant. Runs that merely touch (one ends when the next starts) do not
// overlap.
func maxOverlap(runs []taskRun) (int, time.Time) {
	type event struct {
		at    time.Time
		delta int
	}
	events := make([]event, 0, 2*len(runs))
	for _, r := range runs {
		events = append(events, event{r.start, +1}, event{r.end, -1})
	}
	sort.Slice(events, func(i, j int) bool {
		if !events[i].at.Equal(events[j].at) {
			return events[i].at.Before(events[j].at)
		}
		return events[i].delta < events[j].delta // ends first
	})
	n, most := 0, 0
	var at time.Time
	for _, e := range events {
		n += e.delta
		if n > most {
			most, at = n, e.at
		}
	}
	return most, at
}

// summaryText formats taskSummary for the test log.
func summaryText(m map[string]*taskStat) string {
	types := make([]string, 0, len(m))
	for k := range m {
		types = append(types, k)
	}
	sort.Strings(types)
	var b strings.Builder
	for _, k := range types {
		st := m[k]
		fmt.Fprintf(&b, " %s: %d (mean %.1fms, %v);", k, st.n, float64(st.total.Microseconds())/1000/float64(st.n), st.outcomes)
	}
	return b.String()
}

// fastDir returns a directory on tmpfs (/dev/shm) when it is writable, else
// under t.TempDir(): documents and outboxes are fsynced on every write,
// which costs milliseconds on a disk and nothing on tmpfs. It is removed in
// t.Cleanup.
func fastDir(t testing.TB, name string) string {
	t.Helper()
	root := "/dev/shm"
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		return filepath.Join(t.TempDir(), name)
	}
	dir, err := os.MkdirTemp(root, "integration-"+name+"-*")
	if err != nil {
		return filepath.Join(t.TempDir(), name)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
