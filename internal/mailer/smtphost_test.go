package mailer_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestSMTPIPv6Host: an SMTP_URL whose host is an IPv6 address in brackets
// (smtp://user:pass@[::1]:port, the loopback host the README lists for
// credentials without TLS) reaches the server and sends the message.
func TestSMTPIPv6Host(t *testing.T) {
	t.Parallel()
	if l, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		_ = l.Close()
	}
	srv := smtptest.Start(t, smtptest.Options{Host: "::1", User: "app", Password: "s3cret"})
	s, err := mailer.NewSMTP(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(t.Context(), testMessage()); err != nil {
		t.Fatalf("Send to %s: %v", srv.URL(), err)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Fatalf("the server got %d messages, want 1", n)
	}
}

// TestSMTPStrippedSTARTTLSSendsNoCredentials: a man in the middle (a
// proxy on 127.0.0.2, a host that is not localhost) that removes the
// server's STARTTLS capability does not get the credentials in clear: the
// send fails before AUTH and the server receives nothing.
func TestSMTPStrippedSTARTTLSSendsNoCredentials(t *testing.T) {
	t.Parallel()
	files := testenv.WriteTLSFiles(t, t.TempDir())
	cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	srv := smtptest.Start(t, smtptest.Options{User: "app", Password: "s3cret", TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("listen on 127.0.0.2: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	var mu sync.Mutex
	var fromClient []string
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", srv.Addr())
				if err != nil {
					return
				}
				defer up.Close()
				go func() { // server to client, without STARTTLS
					r := bufio.NewReader(up)
					for {
						line, err := r.ReadString('\n')
						if err != nil {
							_ = c.Close()
							return
						}
						if strings.Contains(strings.ToUpper(line), "STARTTLS") {
							continue
						}
						if _, err := io.WriteString(c, line); err != nil {
							return
						}
					}
				}()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					mu.Lock()
					fromClient = append(fromClient, strings.TrimSpace(line))
					mu.Unlock()
					if _, err := io.WriteString(up, line); err != nil {
						return
					}
				}
			}()
		}
	}()
	s, err := mailer.NewSMTP("smtp://app:s3cret@" + l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(t.Context(), testMessage())
	if err == nil {
		t.Fatal("Send through a proxy that strips STARTTLS succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, line := range fromClient {
		if u := strings.ToUpper(line); strings.HasPrefix(u, "AUTH") || strings.HasPrefix(u, "MAIL") || strings.Contains(line, "s3cret") {
			t.Errorf("the client sent %q through the proxy (all: %q)", line, fromClient)
		}
	}
	if n := srv.Attempts(); n != 0 {
		t.Errorf("the server got %d messages", n)
	}
	t.Logf("error: %v; client lines: %q", err, fromClient)
}
