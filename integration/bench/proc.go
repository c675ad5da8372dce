package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/invoicing/tenantworker/internal/childproc"
)

// procReadyTimeout bounds how long a started binary may take to answer
// /readyz.
const procReadyTimeout = 60 * time.Second

// procStopGrace is how long a stopped binary gets to drain before its
// process group is killed.
const procStopGrace = 30 * time.Second

// proc is one of the project's binaries running as a child of the bench
// (own process group, killed if the bench dies), logging JSON to a pipe
// that the bench reads: "task finished" lines feed its tracker.
type proc struct {
	name string
	proc *childproc.Process
	addr string        // HTTP_ADDR
	done chan struct{} // closed once the process has exited and its output is read
	err  error         // valid after done

	tracker *tracker
	mu      sync.Mutex
	last    []string // last log lines, for error messages
}

// startProc starts bin with env (plus PATH and HOME) and waits until its
// /readyz answers 200.
func startProc(ctx context.Context, name, bin string, env map[string]string, args ...string) (*proc, error) {
	port, err := childproc.FreePort()
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, addr: "127.0.0.1:" + strconv.Itoa(port), done: make(chan struct{}), tracker: newTracker()}
	procEnv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "HTTP_ADDR=" + p.addr, "LOG_FORMAT=json"}
	for k, v := range env {
		procEnv = append(procEnv, k+"="+v)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p.proc, err = childproc.Start(bin, args, childproc.Options{
		Env:        procEnv,
		Output:     w,
		StopSignal: syscall.SIGTERM,
		StopGrace:  procStopGrace,
	})
	w.Close() // the child has its own copy
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	readDone := make(chan struct{})
	go func() { p.read(r); close(readDone) }()
	go func() {
		p.err = p.proc.Err()
		<-readDone
		close(p.done)
	}()

	if err := p.waitReady(ctx); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// waitReady polls /readyz until 200, the process exits, or the timeout.
func (p *proc) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, procReadyTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+"/readyz", nil)
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", p.name, p.err, p.logTail())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w\n%s", p.name, ctx.Err(), p.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// read consumes the process's output until EOF.
func (p *proc) read(r io.ReadCloser) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 256<<10), 4<<20)
	finished := []byte(`"msg":"task finished"`)
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.Contains(line, finished) {
			p.tracker.add(line)
			if bytes.Contains(line, []byte(`"outcome":"ok"`)) {
				continue
			}
		}
		p.mu.Lock()
		p.last = append(p.last, string(line))
		if len(p.last) > 40 {
			p.last = p.last[len(p.last)-40:]
		}
		p.mu.Unlock()
	}
}

// logTail returns the last log lines other than successful tasks.
func (p *proc) logTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.last, "\n")
}

// memory returns the process's VmHWM (peak resident set) and VmRSS in
// bytes from /proc/<pid>/status.
func (p *proc) memory() (hwm, rss int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.proc.Pid()))
	if err != nil {
		return 0, 0, err
	}
	return statusKB(data, "VmHWM:"), statusKB(data, "VmRSS:"), nil
}

// selfMemory is memory for the bench process itself.
func selfMemory() (hwm, rss int64, err error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, err
	}
	return statusKB(data, "VmHWM:"), statusKB(data, "VmRSS:"), nil
}

// statusKB reads a "Name:   1234 kB" field of /proc/*/status, in bytes.
func statusKB(status []byte, field string) int64 {
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// stop sends SIGTERM and waits up to procStopGrace (the worker drains
// running tasks), then kills the process group.
func (p *proc) stop() {
	if p == nil || p.proc == nil {
		return
	}
	_ = p.proc.Stop(context.Background())
	<-p.done
}

// finish is one "task finished" log line.
type finish struct {
	At       time.Time     `json:"time"`
	TaskID   string        `json:"task_id"`
	TaskType string        `json:"task_type"`
	Outcome  string        `json:"outcome"`
	Error    string        `json:"error"`
	Duration time.Duration `json:"duration"`
}

// tracker collects the finished tasks a process logged.
type tracker struct {
	mu     sync.Mutex
	events []finish
	bad    int // lines that did not parse
}

func newTracker() *tracker { return &tracker{} }

// add parses one "task finished" line.
func (t *tracker) add(line []byte) {
	var f finish
	err := json.Unmarshal(line, &f)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.bad++
		return
	}
	t.events = append(t.events, f)
}

// mark returns a position; since(mark) returns the events after it.
func (t *tracker) mark() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.events)
}

// since returns a copy of the events logged after mark.
func (t *tracker) since(mark int) []finish {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]finish(nil), t.events[mark:]...)
}

// count returns how many events after mark are of type typ, and how many
// of those did not end "ok".
func (t *tracker) count(mark int, typ string) (n, failed int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.events[mark:] {
		if e.TaskType == typ {
			n++
			if e.Outcome != "ok" {
				failed++
			}
		}
	}
	return n, failed
}

// errWaitTimeout is wrapped when a wait runs out of time.
var errWaitTimeout = errors.New("timed out")

// waitFor polls cond every interval until it is true, the process exits,
// ctx ends or timeout passes.
func (p *proc) waitFor(ctx context.Context, timeout, interval time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w after %s\n%s", what, errWaitTimeout, timeout, p.logTail())
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s: %s exited (%v)\n%s", what, p.name, p.err, p.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
