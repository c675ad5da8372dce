package worker_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// lockedBuffer is a bytes.Buffer safe for the breakers' background
// prober and the test to use at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDatabaseBreakerSaysWhenTheProcessIsOutOfFiles: a dial that fails
// because this process has no file descriptor left (EMFILE, "too many
// open files") holds the database's tasks as an outage does (no failure
// counted: the next attempts connect once descriptors are free), but the
// breaker's line says the process ran out of file descriptors, not that
// the database is unreachable: the operator looks at the worker's limit
// and what holds its descriptors, not at PostgreSQL.
func TestDatabaseBreakerSaysWhenTheProcessIsOutOfFiles(t *testing.T) {
	t.Parallel()
	cfg, err := pgxpool.ParseConfig("postgres://postgres@127.0.0.1:5432/x?sslmode=disable&connect_timeout=5")
	if err != nil {
		t.Fatal(err)
	}
	// What net.Dial returns when socket(2) fails with EMFILE.
	cfg.ConnConfig.DialFunc = func(_ context.Context, network, addr string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("socket", syscall.EMFILE)}
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var logs lockedBuffer
	catalog := memstore.New()
	tn := addTenant(t, catalog, "out-of-files", tenantctx.StatusActive)
	c := newBreakerChain(t, worker.BreakerOptions{
		Probe:    worker.PingDatabase(func(context.Context, string) (*pgxpool.Pool, error) { return pool, nil }),
		ProbeMin: time.Nanosecond, ProbeMax: time.Nanosecond, SummaryEvery: time.Nanosecond,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	}, catalog, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
			_, err := pool.Exec(ctx, "SELECT 1")
			return err
		}),
	})
	if err := c.render(tn); !errors.Is(err, worker.ErrDatabaseUnavailable) || worker.IsFailure(err) {
		t.Fatalf("first attempt: %v (failure %t); want ErrDatabaseUnavailable, not a failure", err, worker.IsFailure(err))
	}
	if !c.breakers.Down(tn.DatabaseName()) {
		t.Fatalf("database %s not held after the process ran out of file descriptors", tn.DatabaseName())
	}
	if err := c.render(tn); !errors.Is(err, worker.ErrDatabaseDown) || worker.IsFailure(err) {
		t.Fatalf("attempt after a probe that met EMFILE again: %v; want held (ErrDatabaseDown)", err)
	}
	var opened, still bool
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "database unreachable") || strings.Contains(line, "database still down") || strings.Contains(line, " unavailable, retried") {
			t.Errorf("a breaker line blames the database for the process's lack of file descriptors: %s", line)
		}
		if strings.Contains(line, `"msg":"task finished"`) {
			continue // its error says it too, checked above
		}
		if strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, "out of file descriptors") {
			if strings.Contains(line, "still") {
				still = true
			} else {
				opened = true
			}
			if !strings.Contains(line, `"open_files_limit":`) {
				t.Errorf("breaker line without the process's limit of open files: %s", line)
			}
		}
	}
	if !opened || !still {
		t.Errorf("want a warning that the process ran out of file descriptors when the breaker opened (%t) and while it holds (%t); logs:\n%s", opened, still, logs.String())
	}
}
