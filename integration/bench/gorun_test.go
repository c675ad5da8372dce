package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestUnderGoRunStopsWithTheGoCommand starts the bench as its package doc
// does, `go run ./integration/bench -quick`, with its quickest scenario, as
// a script's background job (SIGINT ignored), and stops it as such a
// script does: SIGTERM to the process it started, which is the go command.
// go run does not relay signals to the program it runs (golang/go#40467);
// the bench must stop all the same, its scenario interrupted, and take
// down what it started (its redis-server and PostgreSQL, their
// directories), rather than go on without its parent.
func TestUnderGoRunStopsWithTheGoCommand(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("find the go command: %v", err)
	}
	// The bench's temporary directory: its scratch directory, its redis-
	// server's and its PostgreSQL's go there (readable by the postgres
	// user, as a run as root makes PostgreSQL run as that user).
	tmp := testenv.SharedTempDir(t, "bench-gorun")
	jsonOut := filepath.Join(tmp, "report.json")
	// From a shell that ignores SIGINT, as a script's background job does.
	cmd := exec.Command("sh", "-c", `trap '' INT; exec "$0" "$@"`,
		goBin, "run", ".", "-quick", "-scenarios", "lookup", "-json", jsonOut)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "REDIS_URL=", "DATABASE_URL=")
	// Its own process group, so that the test can end go run's child
	// whatever happens; the bench itself is signalled only through go run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Its output ends once go run and the bench (which shares it) are
	// gone: Wait returns once every holder of it has closed it.
	out := &lineWriter{lines: make(chan string, 64)}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outDone := make(chan struct{})
	go func() { _ = cmd.Wait(); close(outDone) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-outDone
	})
	// go run builds first: a fresh build cache takes minutes.
	started := time.After(5 * time.Minute)
wait:
	for {
		select {
		case line := <-out.lines:
			if strings.Contains(line, "bench: scenario lookup:") {
				break wait
			}
		case <-outDone:
			t.Fatalf("the bench ended before its scenario started:\n%s", out.String())
		case <-started:
			t.Fatalf("the bench's scenario did not start within 5 minutes:\n%s", out.String())
		}
	}

	// What `kill $!` does to `go run ./integration/bench -quick &`.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM to go run: %v", err)
	}
	const stopLimit = 60 * time.Second
	select {
	case <-outDone:
	case <-time.After(stopLimit):
		t.Fatalf("the bench still running %s after SIGTERM to the go run that started it:\n%s", stopLimit, out.String())
	}
	var rep Report
	b, err := os.ReadFile(jsonOut)
	if err == nil {
		err = json.Unmarshal(b, &rep)
	}
	if err != nil {
		t.Fatalf("the bench's report: %v\n%s", err, out.String())
	}
	if len(rep.Scenarios) != 1 || rep.Scenarios[0].Error == "" && rep.Scenarios[0].Skipped == "" {
		t.Errorf("the bench ran its scenario to the end after go run ended: %s", b)
	}
	// Nothing it started runs on, nothing of theirs is left.
	procs, _ := filepath.Glob("/proc/[0-9]*/cwd")
	for _, p := range procs {
		if cwd, err := os.Readlink(p); err == nil && strings.HasPrefix(cwd, tmp+"/") {
			cmdline, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
			t.Errorf("process %s still runs in the bench's directory %s: %s", filepath.Base(filepath.Dir(p)), cwd, strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	for _, pattern := range []string{"tenantworker-bench-*", "tenantworker-bench-pg/*"} {
		if left, _ := filepath.Glob(filepath.Join(tmp, pattern)); len(left) > 0 {
			t.Errorf("left behind by the bench: %v", left)
		}
	}
}

// lineWriter keeps what is written to it and passes each whole line on to
// lines while there is room (a line written in pieces is passed whole).
type lineWriter struct {
	testenv.LogBuffer
	lines   chan string
	partial string
}

// Write implements io.Writer.
func (w *lineWriter) Write(p []byte) (int, error) {
	_, _ = w.LogBuffer.Write(p)
	w.partial += string(p)
	for {
		i := strings.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		select {
		case w.lines <- w.partial[:i]:
		default:
		}
		w.partial = w.partial[i+1:]
	}
}
