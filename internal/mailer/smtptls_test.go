package mailer_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// fakeSMTP is a line-level SMTP server on host that records every line it
// reads; with starttls it offers STARTTLS, with implicit it speaks TLS
// from the first byte (a certificate of a CA the client does not trust).
type fakeSMTP struct {
	addr  string
	mu    sync.Mutex
	lines []string
}

func startFakeSMTP(t *testing.T, host string, starttls, implicit bool) *fakeSMTP {
	t.Helper()
	files := testenv.WriteTLSFiles(t, t.TempDir())
	cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	l, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Skipf("listen on %s: %v", host, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	f := &fakeSMTP{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go f.serve(c, cfg, starttls, implicit)
		}
	}()
	return f
}

func (f *fakeSMTP) serve(c net.Conn, cfg *tls.Config, starttls, implicit bool) {
	defer c.Close()
	if implicit {
		c = tls.Server(c, cfg)
	}
	r := bufio.NewReader(c)
	fmt.Fprint(c, "220 fake ESMTP\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		f.mu.Lock()
		f.lines = append(f.lines, strings.TrimSpace(line))
		f.mu.Unlock()
		switch cmd := strings.ToUpper(strings.Fields(line + " x")[0]); cmd {
		case "EHLO":
			ext := "250-fake\r\n250-AUTH PLAIN\r\n"
			if starttls {
				ext += "250-STARTTLS\r\n"
			}
			fmt.Fprint(c, ext+"250 8BITMIME\r\n")
		case "STARTTLS":
			fmt.Fprint(c, "220 go ahead\r\n")
			tc := tls.Server(c, cfg)
			if tc.Handshake() != nil {
				return
			}
			c, r = tc, bufio.NewReader(tc)
		case "QUIT":
			fmt.Fprint(c, "221 bye\r\n")
			return
		default:
			fmt.Fprint(c, "250 ok\r\n")
		}
	}
}

func (f *fakeSMTP) saw(prefix string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.lines {
		if strings.HasPrefix(strings.ToUpper(l), prefix) {
			return true
		}
	}
	return false
}

// TestSMTPNeverSendsCredentialsOrMailUntrusted: the credentials never go
// to a server without TLS (a host that is not localhost), and a server
// certificate the client does not trust ends the send, over STARTTLS and
// smtps:// alike, before AUTH or MAIL FROM; no error quotes the password.
func TestSMTPNeverSendsCredentialsOrMailUntrusted(t *testing.T) {
	t.Parallel()
	const password = "p@ss:w/rd#1"
	for _, tc := range []struct {
		name, host, scheme string
		starttls, implicit bool
	}{
		{"no STARTTLS offered", "127.0.0.2", "smtp", false, false},
		{"STARTTLS with an untrusted certificate", "127.0.0.1", "smtp", true, false},
		{"smtps with an untrusted certificate", "127.0.0.1", "smtps", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFakeSMTP(t, tc.host, tc.starttls, tc.implicit)
			s, err := mailer.NewSMTP(tc.scheme + "://app:p%40ss%3Aw%2Frd%231@" + f.addr)
			if err != nil {
				t.Fatal(err)
			}
			err = s.Send(context.Background(), testMessage())
			if err == nil {
				t.Fatal("Send succeeded")
			}
			if strings.Contains(err.Error(), password) || strings.Contains(err.Error(), "p%40ss") {
				t.Errorf("error quotes the password: %v", err)
			}
			if f.saw("AUTH") || f.saw("MAIL") {
				t.Errorf("the server got AUTH or MAIL FROM: %v (error %v)", f.lines, err)
			}
			t.Logf("error: %v", err)
		})
	}
}
