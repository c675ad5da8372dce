package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
)

// TestWorkerWhoseLogPipeIsGoneStopsGracefully: a worker whose stderr is a
// pipe whose reader has gone (`worker 2>&1 | tee worker.log`, tee ended
// first by the Ctrl-C or the hang-up, or a log shipper that died) keeps
// working, and SIGTERM still stops it gracefully: its running render
// finishes within SHUTDOWN_TIMEOUT and it exits 0. The lines it can no
// longer write are lost, nothing else: the first one written to the
// broken pipe ("worker shutting down") killed it (SIGPIPE, which Go gives
// a write to fd 2 whose reader is gone), the render left running with its
// lease, as after kill -9.
func TestWorkerWhoseLogPipeIsGoneStopsGracefully(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{shutdownTimeout: 60 * time.Second})
	tn := s.provision([]string{"logpipe"}, tenantName)[0]
	s.seed(tn, invoiceSeed{overdue: 1, lines: 2})
	// The stack's worker, whose log is a file, has migrated the tenant:
	// the render is for a worker whose log is a pipe.
	if exitErr, took, exited := s.workers[0].signal(syscall.SIGTERM, 60*time.Second); !exited || exitErr != nil {
		t.Fatalf("stack's worker after SIGTERM: exited %v (%v) with %v", exited, took, exitErr)
	}

	// The render, enqueued while no worker runs, waits for the invoice,
	// whose table a transaction holds.
	taskID := s.mustPost(tn, "pdf", 1).TaskID
	ctx := context.Background()
	tx, err := s.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{tn.Schema, "invoices"}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}

	httpAddr := freeAddr(t)
	cmd := exec.Command(testenv.BuildBinary(t, workerPkg))
	for k, v := range s.env(map[string]string{"HTTP_ADDR": httpAddr, "OUTBOX_DIR": t.TempDir()}) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, "PATH="+os.Getenv("PATH"), "HOME="+os.Getenv("HOME"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// tee: reads the worker's log until the worker has started, then goes
	// away.
	_, exited := testenv.StartWithTeeGone(t, cmd, true, "worker started", readyTimeout)

	// The render runs: its query waits for the lock.
	eventually(t, 60*time.Second, 100*time.Millisecond, "the render waiting for the invoice", func() error {
		var n int
		if err := s.db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%invoices%'`).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return errors.New("no query waits for the lock")
		}
		return nil
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The worker drains (/readyz 503) while the render waits; then the
	// render gets the invoice and finishes.
	eventually(t, 30*time.Second, 50*time.Millisecond, "the worker draining after SIGTERM", func() error {
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("the worker whose log pipe is gone exited on SIGTERM with %v before its render finished; want it to finish the render and exit 0", err)
		default:
		}
		status, _, err := httpDo(ctx, http.MethodGet, "http://"+httpAddr+"/readyz", "", "", nil)
		if err != nil {
			return err
		}
		if status != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz %d", status)
		}
		return nil
	})
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-exited:
		exited <- err // for the cleanup
	case <-time.After(60 * time.Second):
		t.Fatal("the worker still running 60 s after SIGTERM and the render's lock released")
	}
	if err != nil {
		t.Errorf("the worker whose log pipe is gone exited with %v after SIGTERM; want status 0", err)
	}
	_, byState, err := s.taskStates(tasks.QueueDefault, []string{taskID})
	if err != nil {
		t.Fatal(err)
	}
	if byState["completed"] != 1 {
		t.Errorf("the render running at SIGTERM: %v; want completed", byState)
	}
}
