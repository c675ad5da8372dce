package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/enqueueapp"
)

// inProcessService is the enqueue service run inside the bench
// (enqueueapp.RunWith, the code cmd/enqueue runs), so that -cpuprofile
// sees it. It stands in for the child process when -inprocess is set.
type inProcessService struct {
	addr string
	stop func()
}

// startInProcessEnqueue runs enqueueapp.RunWith with env as its
// environment on a loopback listener, logging JSON to /dev/null.
func startInProcessEnqueue(ctx context.Context, env map[string]string) (*inProcessService, error) {
	cfg, err := config.FromEnv(func(k string) string { return env[k] })
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		ln.Close()
		return nil, err
	}
	logger := slog.New(slog.NewJSONHandler(devNull, nil))
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- enqueueapp.RunWith(ctx, cfg, logger, enqueueapp.Options{Listener: ln, Ready: func(net.Addr) { close(ready) }})
	}()
	svc := &inProcessService{addr: ln.Addr().String(), stop: func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
		devNull.Close()
	}}
	select {
	case <-ready:
		return svc, nil
	case err := <-done:
		cancel()
		devNull.Close()
		return nil, fmt.Errorf("in-process enqueue service: %w", err)
	case <-time.After(procReadyTimeout):
		svc.stop()
		return nil, fmt.Errorf("in-process enqueue service not ready after %s", procReadyTimeout)
	}
}
