package childproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Every test waits for its processes, so no goroutine waiting on a
	// child may remain.
	goleak.VerifyTestMain(m)
}

func TestStartLogsAndExits(t *testing.T) {
	t.Parallel()
	logPath := filepath.Join(t.TempDir(), "out.log")
	p, err := Start("/bin/sh", []string{"-c", "echo hello; echo oops >&2; exit 3"}, Options{LogPath: logPath})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if !p.Exited() {
		t.Error("Exited() = false after Done")
	}
	if err := p.Err(); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("Err() = %v, want exit status 3", err)
	}
	if got := ReadLogSince(logPath, nil); got != "hello\noops\n" {
		t.Errorf("log = %q", got)
	}
}

// waitForFile waits until path exists: a child's sign that it is ready.
// It polls rather than sleeping a fixed time, so a slow machine only makes
// it wait longer.
func waitForFile(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not created within 30 s", path)
		}
	}
}

func TestStopSendsSignalToGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// The shell traps the stop signal, writes a marker and exits; its
	// child sleep is in the same group and gets the signal too.
	// It creates "trapped" once the trap is in place.
	script := `trap 'echo stopped > ` + filepath.Join(dir, "marker") + `; exit 0' INT; : > ` + filepath.Join(dir, "trapped") + `; sleep 60 & wait`
	p, err := Start("/bin/sh", []string{"-c", script}, Options{Dir: dir, StopSignal: syscall.SIGINT})
	if err != nil {
		t.Fatal(err)
	}
	waitForFile(t, filepath.Join(dir, "trapped")) // the shell installed its trap
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "marker")); err != nil || string(b) != "stopped\n" {
		t.Errorf("marker = %q, %v; want the trap to have run", b, err)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	t.Parallel()
	trapped := filepath.Join(t.TempDir(), "trapped")
	p, err := Start("/bin/sh", []string{"-c", `trap '' TERM; : > ` + trapped + `; sleep 60 & wait`}, Options{StopGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitForFile(t, trapped) // the shell ignores TERM from now on
	begin := time.Now()
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("Stop took %s", took)
	}
	// The orphaned sleep is reaped by whoever adopts it; wait for that.
	for deadline := time.Now().Add(5 * time.Second); syscall.Kill(-p.Pid(), 0) == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("process group still exists 5 s after Stop")
		}
	}
}

func TestKill(t *testing.T) {
	t.Parallel()
	p, err := Start("sleep", []string{"60"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if !p.Exited() {
		t.Error("Exited() = false after Kill")
	}
}

func TestStartMissingBinary(t *testing.T) {
	t.Parallel()
	if _, err := Start(filepath.Join(t.TempDir(), "missing"), nil, Options{}); err == nil {
		t.Fatal("Start of a missing binary succeeded")
	}
}

// TestFreePort binds a port FreePort hands out. Other test processes pick
// ports at the same time, so, as FreePort's callers do, it tries again
// with a new port when one was taken in between; three taken in a row
// would mean FreePort hands out ports that are not free.
func TestFreePort(t *testing.T) {
	t.Parallel()
	var errs []error
	for range 3 {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			l.Close()
			return
		}
		errs = append(errs, fmt.Errorf("port %d: %w", port, err))
	}
	t.Fatalf("no port FreePort handed out could be bound: %v", errors.Join(errs...))
}

func TestReadLogSince(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("new\n" + strings.Repeat("x", 10<<10))
	f.Close()
	got := ReadLogSince(path, before)
	if !strings.HasPrefix(got, "...\n") || len(got) != len("...\n")+8<<10 {
		t.Errorf("ReadLogSince kept %d bytes, want the last 8 KiB", len(got))
	}
	if got := ReadLogSince(filepath.Join(t.TempDir(), "missing"), nil); !strings.HasPrefix(got, "(read log ") {
		t.Errorf("missing log: %q", got)
	}
}
