package workerapp

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/config"
)

// TestRunRefusesASenderTheEnvelopeCannotCarry: a MAIL_FROM whose local
// part needs quoting parses as an address, but go-mail puts it unquoted
// into MAIL FROM, where a strict server refuses every reminder, each
// retried ten times. The worker refuses it at start, before it connects
// to anything (nothing listens at the URLs given here).
func TestRunRefusesASenderTheEnvelopeCannotCarry(t *testing.T) {
	t.Parallel()
	cfg, err := config.FromEnv(func(k string) string {
		return map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/x", "REDIS_URL": "redis://127.0.0.1:1",
			"MAIL_FROM": `Billing <"billing dept"@example.com>`}[k]
	})
	if err != nil {
		t.Fatalf("config refused the address already: %v", err)
	}
	err = Run(context.Background(), cfg, config.NewLogger(cfg, io.Discard))
	if err == nil || !strings.Contains(err.Error(), "MAIL_FROM") || !strings.Contains(err.Error(), "needs quoting") {
		t.Fatalf("Run = %v, want MAIL_FROM refused at start", err)
	}
}

// TestRunClosesAHandedInListenerWhenItCannotStart: Options.Listener says
// Run closes it, and so it does when the worker does not start (here a
// sender refused before anything connects): the port it holds is free
// again for the caller's next try. It was left open.
func TestRunClosesAHandedInListenerWhenItCannotStart(t *testing.T) {
	t.Parallel()
	cfg, err := config.FromEnv(func(k string) string {
		return map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/x", "REDIS_URL": "redis://127.0.0.1:1",
			"MAIL_FROM": `Billing <"billing dept"@example.com>`}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	if err := RunWith(context.Background(), cfg, config.NewLogger(cfg, io.Discard), Options{Listener: ln}); err == nil {
		t.Fatal("RunWith started with a sender it refuses")
	}
	// Open, Accept would wait for a connection: bounded, it ends with a
	// timeout instead of net.ErrClosed.
	if err := ln.(*net.TCPListener).SetDeadline(time.Now().Add(2 * time.Second)); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatal(err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on the handed-in listener after a failed start = %v; want net.ErrClosed", err)
	}
}
