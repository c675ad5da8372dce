package devstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// runStack runs Run in the background and returns its Info once ready, a
// function that stops it and returns Run's error, and the banner output.
func runStack(t *testing.T, opts Options) (Info, func() error, *bytes.Buffer) {
	t.Helper()
	var stdout bytes.Buffer
	opts.Stdout = &stdout
	opts.HTTPAddr = "127.0.0.1:0"
	if opts.ActivateTimeout == 0 {
		// Longer than the default: on a slow shared machine under -race
		// the demo tenants' migrations can take minutes.
		opts.ActivateTimeout = 4 * time.Minute
	}
	ready := make(chan Info, 1)
	opts.Ready = func(i Info) { ready <- i }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()
	var (
		once   sync.Once
		runErr error
	)
	// stop cancels Run and returns its error; later calls return the same.
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(time.Minute): // a bound for the failure message, not a measurement
				runErr = errors.New("Run did not return a minute after cancel")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	select {
	case info := <-ready:
		return info, stop, &stdout
	case err := <-done:
		once.Do(func() { runErr = err })
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(5 * time.Minute): // a bound for the failure message, not a measurement
		t.Fatalf("Run not ready within 5 minutes")
	}
	return Info{}, nil, nil
}

// getStatus GETs url (with Host host when set) with a bearer token and
// returns the status code.
func getStatus(t *testing.T, url, host, token string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestRunInProcessStopsCleanly(t *testing.T) {
	t.Parallel()
	dataDir := testenv.SharedTempDir(t, "devstack-unit")
	info, stop, stdout := runStack(t, Options{DataDir: dataDir, AdminToken: "unit-token"})

	if info.AdminToken != "unit-token" || info.PGDir == "" || filepath.Dir(info.PGDir) != dataDir {
		t.Fatalf("info = %+v", info)
	}
	if got := strings.Count(stdout.String(), ReadyPrefix); got != 1 {
		t.Fatalf("banner has %d %s lines, want 1:\n%s", got, ReadyPrefix, stdout)
	}
	for _, slug := range []string{"acme", "globex"} {
		tn := info.Tenants[slug]
		if tn.ID == "" || tn.APIKey == "" || tn.Invoice.ID != 1 {
			t.Fatalf("tenant %s = %+v", slug, tn)
		}
	}
	// The enqueue service answers for a demo tenant with its key.
	pdf := "http://" + info.HTTPAddr + "/v1/invoices/1/pdf"
	if got := getStatus(t, pdf, "acme.localhost", info.Tenants["acme"].APIKey); got != http.StatusNotFound { // authenticated; not rendered yet
		t.Fatalf("GET unrendered PDF = %d, want 404", got)
	}
	// Another tenant's key is refused.
	if got := getStatus(t, pdf, "acme.localhost", info.Tenants["globex"].APIKey); got != http.StatusForbidden {
		t.Fatalf("acme route with globex key = %d, want 403", got)
	}
	// Fair dispatch is on, as in the binaries by default: a tenant's queue
	// is there to see (with it off the route answers 409).
	queue := "http://" + info.HTTPAddr + "/admin/tenants/" + info.Tenants["acme"].ID + "/queue"
	if got := getStatus(t, queue, "", info.AdminToken); got != http.StatusOK {
		t.Fatalf("GET tenant queue = %d, want 200 (fair dispatch on)", got)
	}

	if err := stop(); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if _, err := os.Stat(info.PGDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pg dir after stop: %v, want removed", err)
	}
	for _, addr := range []string{info.HTTPAddr, info.WorkerAddr, info.RedisAddr} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s after stop: %v", addr, err)
		}
		ln.Close()
	}
}

func TestRunRemovesStaleDatabaseDirs(t *testing.T) {
	t.Parallel()
	dataDir := testenv.SharedTempDir(t, "devstack-unit")
	// A directory named like one of a run that was killed: PID 2^22+1 is
	// above Linux's pid_max limit, so no process has it.
	stale := filepath.Join(dataDir, "pgserver-4194305-1")
	if err := os.MkdirAll(filepath.Join(stale, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, stop, _ := runStack(t, Options{DataDir: dataDir})
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale directory after start: %v, want removed", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenDatabaseFallsBackWhenDataDirUnreachable(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	private := filepath.Join(testenv.SharedTempDir(t, "devstack-unit"), "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := openDatabase(ctx, "", private, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("openDatabase: %v", err)
	}
	dir := db.dir()
	if err := db.stop(ctx); err != nil {
		t.Fatal(err)
	}
	wantParent := private
	if os.Geteuid() == 0 {
		// Root: postgres runs as the postgres user, who cannot enter a
		// 0700 root-owned directory.
		wantParent = os.TempDir()
	}
	if filepath.Dir(dir) != filepath.Clean(wantParent) {
		t.Fatalf("database directory %s, want one in %s", dir, wantParent)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("database directory after stop: %v", err)
	}
}

func TestOpenDatabaseUsesDatabaseURL(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	url := testenv.Postgres(t)
	dataDir := t.TempDir()
	db, err := openDatabase(ctx, url, dataDir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if db.url != url || db.dir() != "" {
		t.Fatalf("database = %q in %q, want %q and no directory", db.url, db.dir(), url)
	}
	if err := db.stop(ctx); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dataDir); len(entries) != 0 {
		t.Fatalf("data dir has %d entries with DATABASE_URL, want none", len(entries))
	}
}

func TestRunInterruptedWhileStartingIsNotAFailure(t *testing.T) {
	t.Parallel()
	dataDir := testenv.SharedTempDir(t, "devstack-unit")
	ctx, cancel := context.WithCancel(context.Background())
	var stdout bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{DataDir: dataDir, HTTPAddr: "127.0.0.1:0", Stdout: &stdout})
	}()
	time.Sleep(200 * time.Millisecond) // inside initdb or the first migrations
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run interrupted while starting = %v, want nil", err)
		}
	case <-time.After(time.Minute): // a bound for the failure message, not a measurement
		t.Fatalf("Run did not return a minute after an interrupt while starting")
	}
	if stdout.Len() != 0 {
		t.Fatalf("banner printed although interrupted before ready:\n%s", stdout.String())
	}
	entries, _ := os.ReadDir(dataDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "pgserver-") {
			t.Fatalf("database directory %s left after an interrupted start", e.Name())
		}
	}
}

// A run killed after falling back to the system temp directory (root with
// a data directory the postgres user cannot reach) leaves its database
// directory there; the next start removes it as it does in the data
// directory. Not parallel: it sets TMPDIR.
func TestOpenDatabaseRemovesStaleDirsInTempDir(t *testing.T) {
	ctx := testContext(t)
	tmp := testenv.SharedTempDir(t, "devstack-tmp")
	t.Setenv("TMPDIR", tmp)
	// PID 2^22+1 is above Linux's pid_max limit, so no process has it.
	stale := filepath.Join(tmp, "pgserver-4194305-1")
	if err := os.MkdirAll(filepath.Join(stale, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(testenv.SharedTempDir(t, "devstack-unit"), "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := openDatabase(ctx, "", private, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("openDatabase: %v", err)
	}
	if err := db.stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale directory in the temp directory after start: %v, want removed", err)
	}
}

// TestOpenDatabaseFallbackUnreachableNamesTheWayOut: as root, with a data
// directory and a TMPDIR the postgres user can reach neither of (both under
// a private home, as with TMPDIR=$HOME/tmp), the error says that neither
// place works and what to change, rather than advising a directory under
// the temp directory that was just refused. Not parallel: it sets TMPDIR.
func TestOpenDatabaseFallbackUnreachableNamesTheWayOut(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root runs PostgreSQL as the postgres user")
	}
	ctx := testContext(t)
	home := filepath.Join(testenv.SharedTempDir(t, "devstack-unit"), "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	tmp, dataDir := filepath.Join(home, "tmp"), filepath.Join(home, "devdata")
	for _, dir := range []string{tmp, dataDir} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("TMPDIR", tmp)
	db, err := openDatabase(ctx, "", dataDir, slog.New(slog.DiscardHandler))
	if err == nil {
		_ = db.stop(ctx)
		t.Fatal("openDatabase succeeded in directories the postgres user cannot reach")
	}
	msg := err.Error()
	if strings.Contains(msg, "use a directory under "+tmp) || !strings.Contains(msg, "-data-dir") || !strings.Contains(msg, "TMPDIR") {
		t.Fatalf("openDatabase error:\n%v\nwant it to name -data-dir and TMPDIR, not to advise a directory under the refused %s", err, tmp)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Fatalf("%s holds %d entries after the failed start, want none", tmp, len(entries))
	}
}

// TestOpenDatabaseRemovesStaleDirOfItsOwnPID: a dev stack started again
// with the PID of the killed run (in a container the process gets the same
// PID at every start, often 1) removes the killed run's database directory
// instead of keeping one more at every restart.
func TestOpenDatabaseRemovesStaleDirOfItsOwnPID(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dataDir := testenv.SharedTempDir(t, "devstack-unit")
	stale := filepath.Join(dataDir, fmt.Sprintf("pgserver-%d-1", os.Getpid()))
	if err := os.MkdirAll(filepath.Join(stale, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	db, err := openDatabase(ctx, "", dataDir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("openDatabase: %v", err)
	}
	if err := db.stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory of a killed run with this process's PID after start: %v, want removed", err)
	}
}
