package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stopGrace is how long a server gets to shut down after the gentle signal
// before its whole process group is killed.
const stopGrace = 5 * time.Second

// process is one server process that this package started and owns. It runs
// in its own process group, dies with the test binary (Pdeathsig), and is
// stopped with a gentle signal first and SIGKILL after stopGrace.
type process struct {
	cmd     *exec.Cmd
	stopSig syscall.Signal
	done    chan struct{} // closed once the process has exited
	waitErr error         // valid after done is closed
}

// startProcess starts bin with args, its stdout and stderr appended to
// logPath.
func startProcess(bin string, args []string, dir, logPath string, stopSig syscall.Signal) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", logPath, err)
	}
	defer logFile.Close() // the child has its own copy of the descriptor

	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // signals to the test's group do not reach it
		Pdeathsig: syscall.SIGKILL, // it dies with the test binary
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, stopSig: stopSig, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has already exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends the gentle stop signal to the process group, waits up to
// stopGrace, then kills the group. It returns once the process has exited.
func (p *process) stop() error {
	if p.exited() {
		return nil
	}
	pgid := p.cmd.Process.Pid
	if err := syscall.Kill(-pgid, p.stopSig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal process group %d: %w", pgid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill process group %d: %w", pgid, err)
	}
	<-p.done
	return nil
}

// kill kills the process group at once and waits for the process to exit.
func (p *process) kill() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// freePort returns a loopback TCP port that was free a moment ago. Another
// process may take it before the server binds it; callers retry once with a
// new port when the server reports the address in use.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// readLogSince returns the tail of a server log written after the log had
// the size in before (nil: the whole log), for failure messages.
func readLogSince(path string, before os.FileInfo) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(read log %s: %v)", path, err)
	}
	if before != nil && before.Size() <= int64(len(b)) {
		b = b[before.Size():]
	}
	return logTail(b)
}

// logTail keeps the last 8 KiB of a log.
func logTail(b []byte) string {
	const max = 8 << 10
	if len(b) > max {
		return "...\n" + string(b[len(b)-max:])
	}
	return string(b)
}

// tempRootEnv overrides where server directories are created.
const tempRootEnv = "TESTENV_TMPDIR"

// tempRoot is where server directories go: $TESTENV_TMPDIR when set, else
// /dev/shm when it is a writable directory (a database on tmpfs is created
// about ten times faster than on disk), else os.TempDir().
func tempRoot() string {
	if dir := os.Getenv(tempRootEnv); dir != "" {
		return dir
	}
	const shm = "/dev/shm"
	if st, err := os.Stat(shm); err == nil && st.IsDir() && unix.Access(shm, unix.W_OK) == nil {
		return shm
	}
	return os.TempDir()
}

// makeTempDir creates a temporary directory under root that Main removes; it
// is traversable by other users so that a service user can reach its children.
// Directories that dead test binaries left in root are removed first.
func makeTempDir(root, kind string) (string, error) {
	sweepStaleOnce(root)
	dir, err := os.MkdirTemp(root, tempDirPattern(kind))
	if err != nil {
		return "", fmt.Errorf("create temp dir: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("chmod temp dir %s: %w", dir, err)
	}
	registerDir(dir)
	return dir, nil
}

// findBinary looks name up on PATH, then in the given directories (later
// entries are preferred, so pass them oldest first).
func findBinary(name string, dirs ...string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		p := filepath.Join(dirs[i], name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}
