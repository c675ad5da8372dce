package workerapp

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/schema"
)

// TestRunFailsOnUnresponsivePostgres: a PostgreSQL that accepts TCP
// connections but never answers (hung server, saturated pooler, half-open
// network path) makes start-up fail with the reason once the connect
// timeout is over (schema.DefaultConnectTimeout), instead of hanging
// without a word.
func TestRunFailsOnUnresponsivePostgres(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // never read, never answered
		}
	}()
	defer func() {
		ln.Close()
		<-acceptDone
		for _, c := range conns {
			c.Close()
		}
	}()
	redisURL := testenv.RedisURL(t)
	vars := map[string]string{
		"DATABASE_URL":  "postgres://postgres@" + ln.Addr().String() + "/x?sslmode=disable",
		"REDIS_URL":     redisURL,
		"HTTP_ADDR":     "127.0.0.1:0",
		"DOCUMENTS_DIR": t.TempDir(),
		"OUTBOX_DIR":    t.TempDir(),
	}
	cfg, err := config.FromEnv(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, config.NewLogger(cfg, io.Discard)) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "connect to database") || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("Run against a PostgreSQL that never answers = %v, want a connect timeout", err)
		}
	case <-time.After(schema.DefaultConnectTimeout + 30*time.Second):
		cancel()
		err := <-done
		t.Fatalf("Run still starting against a PostgreSQL that never answers; after cancel: %v", err)
	}
}

// TestRunRemovesStaleTempDocuments: a worker killed while it wrote a
// document leaves the write's temporary file in DOCUMENTS_DIR (in the
// tenant's .tmp~ directory, or next to the document for an older release);
// the next worker to start removes such a file once it is old enough to be
// nobody's write in progress, and keeps the documents and a young
// temporary file.
func TestRunRemovesStaleTempDocuments(t *testing.T) {
	t.Parallel()
	docs := t.TempDir()
	old := time.Now().Add(-2 * time.Hour)
	mk := func(rel string, mtime time.Time) string {
		t.Helper()
		p := filepath.Join(docs, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("%PDF-partial"), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}
	staleOlder := mk("tn_killed/invoices/.put~7.pdf.ABCDEFGH", old)
	stale := mk("tn_killed/.tmp~/.put~9.pdf.QRSTUVWX", old)
	doc := mk("tn_killed/invoices/7.pdf", old)
	young := mk("tn_killed/.tmp~/.put~8.pdf.IJKLMNOP", time.Now())

	startWorker(t, testenv.RedisURL(t), map[string]string{"DOCUMENTS_DIR": docs})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range []string{stale, staleOlder} {
		for {
			if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("stale temporary file %s still there after the worker started", p)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, p := range []string{doc, young} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v (kept files must stay)", p, err)
		}
	}
}

// TestRunRefusesADocumentsDirItCannotWrite: a DOCUMENTS_DIR the worker
// cannot write (a volume mounted read-only, a directory its user may not
// write) stops the start with DOCUMENTS_DIR and the reason, before the
// worker serves /readyz or takes a task. It started, answered /readyz with
// 200, and failed every render at its write ("read-only file system"),
// retried until archived.
func TestRunRefusesADocumentsDirItCannotWrite(t *testing.T) {
	t.Parallel()
	docs := testenv.ReadOnlyDir(t)
	vars := map[string]string{
		"DATABASE_URL":       testenv.Postgres(t),
		"REDIS_URL":          testenv.RedisURL(t),
		"HTTP_ADDR":          "127.0.0.1:0",
		"DOCUMENTS_DIR":      docs,
		"OUTBOX_DIR":         t.TempDir(),
		"WORKER_CONCURRENCY": "2",
		"SHUTDOWN_TIMEOUT":   "5s",
		"SCHEDULER_ENABLED":  "false",
	}
	cfg, err := config.FromEnv(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- RunWith(ctx, cfg, config.NewLogger(cfg, io.Discard), Options{Ready: func(a net.Addr) { ready <- a }})
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "DOCUMENTS_DIR") || !strings.Contains(err.Error(), "read-only file system") && !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("Run with a DOCUMENTS_DIR it cannot write = %v, want DOCUMENTS_DIR refused with the reason", err)
		}
	case a := <-ready:
		code, body := get(t, "http://"+a.String()+"/readyz")
		cancel()
		<-done
		t.Fatalf("the worker started with a DOCUMENTS_DIR it cannot write (/readyz %d %s); want the start refused", code, strings.TrimSpace(body))
	case <-time.After(2 * time.Minute): // a bound for the failure message, not a measurement
		cancel()
		t.Fatalf("Run neither started nor failed in 2 minutes; after cancel: %v", <-done)
	}
	if entries, err := os.ReadDir(docs); err != nil || len(entries) != 0 {
		t.Errorf("DOCUMENTS_DIR after the refused start: %v, %v; want it empty", entries, err)
	}
}

// TestRunStartsWithAFullDocumentsDir: a DOCUMENTS_DIR on a full file
// system is no reason not to start: the worker's reminders and other tasks
// need no room there, and its renders are retried until there is some.
func TestRunStartsWithAFullDocumentsDir(t *testing.T) {
	t.Parallel()
	docs := t.TempDir()
	if err := syscall.Mount("tmpfs", docs, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("cannot mount a tmpfs for a full disk (the test needs CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(docs, syscall.MNT_DETACH) })
	f, err := os.Create(filepath.Join(docs, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = f.Write(make([]byte, 4096))
	}
	_ = f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("fill the disk: %v", err)
	}
	w := startWorker(t, testenv.RedisURL(t), map[string]string{"DOCUMENTS_DIR": docs, "SCHEDULER_ENABLED": "false"})
	if code, body := get(t, "http://"+w.addr+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with a full DOCUMENTS_DIR = %d %s, want 200", code, body)
	}
}
