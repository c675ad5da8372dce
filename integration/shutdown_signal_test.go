package integration

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// silentRedis listens on a loopback port, accepts connections and never
// answers: a Redis that hangs. It reports the first connection on the
// returned channel.
func silentRedis(t *testing.T) (addr string, connected <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			once.Do(func() { close(ch) })
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String(), ch
}

// startWaitingForRedis starts bin against a Redis that never answers and
// returns once the process connected to it: a binary still starting.
func startWaitingForRedis(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	addr, connected := silentRedis(t)
	p := startProc(t, name, bin, map[string]string{
		"REDIS_URL":    "redis://" + addr,
		"DATABASE_URL": testenv.Postgres(t),
		"ADMIN_TOKEN":  adminToken,
		"LOG_FORMAT":   "json",
	}, args...)
	select {
	case <-connected:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s never connected to Redis", name)
	}
	return p
}

// servedBinary is a built binary and the arguments that make it serve.
type servedBinary struct {
	name, bin string
	args      []string
}

// servingBinaries builds the worker and the enqueue service.
func servingBinaries(t *testing.T) []servedBinary {
	t.Helper()
	return []servedBinary{
		{"worker", testenv.BuildBinary(t, workerPkg), nil},
		{"enqueue", testenv.BuildBinary(t, enqueuePkg), []string{"serve"}},
	}
}

// TestStoppedWhileStartingIsACleanStop sends SIGTERM to each binary while it
// still waits for Redis at start-up: an operator's stop, not a failure, so
// the exit status is 0 and nothing is logged as failed (as the dev stack
// does, "dev stack interrupted while starting").
func TestStoppedWhileStartingIsACleanStop(t *testing.T) {
	for _, c := range servingBinaries(t) {
		t.Run(c.name, func(t *testing.T) {
			p := startWaitingForRedis(t, c.name, c.bin, c.args...)
			exitErr, took, exited := p.signal(syscall.SIGTERM, 40*time.Second)
			if !exited {
				t.Fatalf("%s still running %s after SIGTERM", c.name, took)
			}
			log := p.logText()
			if exitErr != nil || strings.Contains(log, `"level":"ERROR"`) {
				t.Errorf("%s stopped while starting: exit %v, want status 0 without an error record; log:\n%s", c.name, exitErr, log)
			}
		})
	}
}

// TestInterruptIgnoredAtStartStaysIgnored: a process started with SIGINT
// ignored (a shell script's background job, "nohup") keeps ignoring it, as
// the one who started it asked: a Ctrl-C meant for the script's foreground
// does not stop the worker or the enqueue service behind it. SIGTERM still
// stops both cleanly.
func TestInterruptIgnoredAtStartStaysIgnored(t *testing.T) {
	for _, c := range servingBinaries(t) {
		t.Run(c.name, func(t *testing.T) {
			// As sh does for a background job: SIGINT ignored, which the
			// exec'd binary inherits.
			wrapper := filepath.Join(t.TempDir(), c.name+"-ignoring-int")
			script := "#!/bin/sh\ntrap '' INT\nexec " + c.bin + ` "$@"` + "\n"
			if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			p := startWaitingForRedis(t, c.name, wrapper, c.args...)
			// A SIGINT obeyed ends the start at once (as SIGTERM does). The
			// window stays well inside the start-up's own bound: the
			// client's read timeout (5 s) ends the ping of the silent
			// Redis, and the process then fails by itself; with a 5 s
			// window, a loaded machine saw that failure first.
			if exitErr, took, exited := p.signal(syscall.SIGINT, time.Second); exited {
				t.Fatalf("%s started with SIGINT ignored stopped %s after a SIGINT (exit %v); log:\n%s", c.name, took, exitErr, p.logText())
			}
			exitErr, took, exited := p.signal(syscall.SIGTERM, 40*time.Second)
			if !exited {
				t.Fatalf("%s still running %s after SIGTERM", c.name, took)
			}
			if exitErr != nil {
				t.Errorf("%s: exit %v after SIGTERM, want status 0; log:\n%s", c.name, exitErr, p.logText())
			}
		})
	}
}
