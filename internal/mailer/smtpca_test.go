package mailer_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// smtpCADirEnv names the directory of testCA's files in
// TestSMTPPrivateCAChild's process.
const smtpCADirEnv = "TENANTWORKER_TEST_SMTP_CA_DIR"

// TestSMTPPrivateCAFromSSLCertFile: a mail server whose certificate a
// private CA signed is trusted once SSL_CERT_FILE names that CA, as the
// README says, over STARTTLS (also required: SMTP_TLS=required) and
// smtps:// alike; the certificate is
// checked against the URL's host, also when that is an IP address (IPv4
// or IPv6). Go
// reads the system's CAs once per process, so the sends run in a child
// process of this test binary (TestSMTPPrivateCAChild).
func TestSMTPPrivateCAFromSSLCertFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	testenv.WriteCerts(t, dir, "127.0.0.1", "::1", "mail.example.test")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestSMTPPrivateCAChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), smtpCADirEnv+"="+dir, "SSL_CERT_FILE="+filepath.Join(dir, "ca.pem"), "SSL_CERT_DIR=")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestSMTPPrivateCAChild") {
		t.Fatalf("the child process with SSL_CERT_FILE: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// TestSMTPPrivateCAChild is TestSMTPPrivateCAFromSSLCertFile's child
// process (skipped otherwise).
func TestSMTPPrivateCAChild(t *testing.T) {
	dir := os.Getenv(smtpCADirEnv)
	if dir == "" {
		t.Skip("runs in TestSMTPPrivateCAFromSSLCertFile's child process")
	}
	load := func(name string) *tls.Config {
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	for _, implicit := range []bool{false, true} {
		mode := "STARTTLS"
		if implicit {
			mode = "smtps"
		}
		t.Run(mode+" trusted", func(t *testing.T) {
			srv := smtptest.Start(t, smtptest.Options{User: "app", Password: "s3cret", TLS: load("127.0.0.1"), Implicit: implicit})
			s, err := mailer.NewSMTP(srv.URL())
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send(t.Context(), testMessage()); err != nil {
				t.Fatalf("Send to %s: %v", srv.URL(), err)
			}
			msgs := srv.Messages()
			if len(msgs) != 1 || !msgs[0].TLS {
				t.Fatalf("got %d messages (over TLS: %v), want 1 over TLS", len(msgs), len(msgs) == 1 && msgs[0].TLS)
			}
		})
		t.Run(mode+" trusted, SMTP_TLS=required", func(t *testing.T) {
			srv := smtptest.Start(t, smtptest.Options{User: "app", Password: "s3cret", TLS: load("127.0.0.1"), Implicit: implicit})
			s, err := mailer.NewSMTP(srv.URL(), mailer.WithTLSMode(mailer.TLSRequired))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send(t.Context(), testMessage()); err != nil {
				t.Fatalf("Send to %s: %v", srv.URL(), err)
			}
			if msgs := srv.Messages(); len(msgs) != 1 || !msgs[0].TLS {
				t.Fatalf("got %d messages, want 1 over TLS", len(msgs))
			}
		})
		t.Run(mode+" trusted IPv6", func(t *testing.T) {
			if l, err := net.Listen("tcp", "[::1]:0"); err != nil {
				t.Skipf("no IPv6 loopback: %v", err)
			} else {
				_ = l.Close()
			}
			srv := smtptest.Start(t, smtptest.Options{Host: "::1", User: "app", Password: "s3cret", TLS: load("::1"), Implicit: implicit})
			s, err := mailer.NewSMTP(srv.URL())
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send(t.Context(), testMessage()); err != nil {
				t.Fatalf("Send to %s: %v", srv.URL(), err)
			}
			if msgs := srv.Messages(); len(msgs) != 1 || !msgs[0].TLS {
				t.Fatalf("got %d messages, want 1 over TLS", len(msgs))
			}
		})
		t.Run(mode+" certificate of another host", func(t *testing.T) {
			srv := smtptest.Start(t, smtptest.Options{User: "app", Password: "s3cret", TLS: load("mail.example.test"), Implicit: implicit})
			s, err := mailer.NewSMTP(srv.URL())
			if err != nil {
				t.Fatal(err)
			}
			err = s.Send(t.Context(), testMessage())
			if err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("Send to %s with a certificate for mail.example.test: %v, want a certificate error", srv.URL(), err)
			}
			if n := srv.Attempts(); n != 0 {
				t.Fatalf("the server got %d messages", n)
			}
			t.Logf("error: %v", err)
		})
	}
}
