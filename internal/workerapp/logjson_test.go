package workerapp

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestJSONLogsStayJSONDuringRedisOutage: with LOG_FORMAT=json every
// line the worker writes to stderr is a JSON record, also while Redis is
// down (go-redis's pool logs too).
// Not parallel: it redirects the process's fd 2.
func TestJSONLogsStayJSONDuringRedisOutage(t *testing.T) {
	r, wpipe, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved, err := syscall.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup2(int(wpipe.Fd()), 2); err != nil {
		t.Fatal(err)
	}
	lines := make(chan []string, 1)
	go func() {
		var out []string
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			out = append(out, sc.Text())
		}
		lines <- out
	}()
	restored := false
	restore := func() {
		if !restored {
			restored = true
			_ = syscall.Dup2(saved, 2)
			_ = wpipe.Close()
		}
	}
	defer restore()

	rs := testenv.StartRedis(t, testenv.RedisOptions{})
	vars := map[string]string{
		"DATABASE_URL": testenv.Postgres(t), "REDIS_URL": rs.URL(), "HTTP_ADDR": "127.0.0.1:0",
		"DOCUMENTS_DIR": t.TempDir(), "OUTBOX_DIR": t.TempDir(), "WORKER_CONCURRENCY": "2",
		"SHUTDOWN_TIMEOUT": "5s", "SCHEDULER_ENABLED": "false", "LOG_FORMAT": "json",
	}
	cfg, err := config.FromEnv(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	logger, closeLog := config.NewProcessLogger(cfg, os.Stderr)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- RunWith(ctx, cfg, logger, Options{Ready: func(a net.Addr) { ready <- a }}) }()
	var addr string
	select {
	case a := <-ready:
		addr = a.String()
	case err := <-done:
		restore()
		t.Fatalf("worker exited: %v", err)
	}
	rs.Stop(t)
	get(t, "http://"+addr+"/readyz")
	get(t, "http://"+addr+"/metrics")
	time.Sleep(time.Second)
	rs.Start(t)
	cancel()
	<-done
	_ = closeLog()
	restore()
	got := <-lines
	bad := 0
	for _, l := range got {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if !json.Valid([]byte(l)) {
			bad++
			if bad <= 5 {
				t.Errorf("stderr line is not JSON: %s", l)
			}
		}
	}
	t.Logf("%d lines on stderr, %d not JSON", len(got), bad)
}
