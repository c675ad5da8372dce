package main

import (
	"context"
	"flag"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for cmd/worker
// (BENCH_FAKE_WORKER set): it writes the file -cpuprofile names, answers
// /readyz on HTTP_ADDR and exits on SIGTERM.
func TestMain(m *testing.M) {
	if os.Getenv("BENCH_FAKE_WORKER") != "" {
		fakeWorker()
		return
	}
	os.Exit(m.Run())
}

// fakeWorker is the stand-in cmd/worker of TestMain.
func fakeWorker() {
	fs := flag.NewFlagSet("worker", flag.ExitOnError)
	profile := fs.String("cpuprofile", "", "")
	_ = fs.Parse(os.Args[1:])
	if *profile != "" {
		if err := os.WriteFile(*profile, []byte("profile"), 0o644); err != nil {
			os.Exit(3)
		}
	}
	srv := &http.Server{Addr: os.Getenv("HTTP_ADDR"), ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })}
	go func() { _ = srv.ListenAndServe() }()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	_ = srv.Close()
	os.Exit(0)
}

// -cpuprofile FILE makes every cmd/worker the bench starts write
// FILE.worker-<name> (flag help, integration/bench/README.md): the
// fairness and scaleout scenarios start theirs through startWorkerEnv.
func TestWorkerEnvWritesCPUProfile(t *testing.T) {
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	prebuilt := &buildResult{path: self}
	prebuilt.once.Do(func() {})
	b := &bench{
		env:           &env{dir: dir, builds: map[string]*buildResult{workerPkg: prebuilt}},
		workerProfile: filepath.Join(dir, "cpu.prof"),
	}
	env := b.workerEnv("postgres://127.0.0.1:1/unused", "fairness-fair")
	env["BENCH_FAKE_WORKER"] = "1"
	w, err := b.startWorkerEnv(context.Background(), "fairness-fair", env)
	if err != nil {
		t.Fatal(err)
	}
	w.stop()
	want := b.workerProfile + ".worker-fairness-fair"
	if _, err := os.Stat(want); err != nil {
		matches, _ := filepath.Glob(b.workerProfile + "*")
		t.Errorf("-cpuprofile %s: the worker wrote no %s (%v); profiles written: %v", b.workerProfile, filepath.Base(want), err, matches)
	}
}
