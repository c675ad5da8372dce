package mailer_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
)

func TestNewSMTPParsesURL(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"smtp://mail.example.com", "smtp://mail.example.com:587"},
		{"smtp://mail.example.com:25", "smtp://mail.example.com:25"},
		{"smtps://mail.example.com", "smtps://mail.example.com:465"},
		{"smtp://user%40example.com:p%3Ass@mail.example.com:2525", "smtp://user%40example.com@mail.example.com:2525"},
		{"smtp://[::1]:2525", "smtp://[::1]:2525"},
	} {
		s, err := mailer.NewSMTP(tt.in)
		if err != nil {
			t.Errorf("NewSMTP(%q): %v", tt.in, err)
			continue
		}
		if got := s.String(); got != tt.want {
			t.Errorf("NewSMTP(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
	}
	for _, in := range []string{
		"", "http://mail.example.com", "smtp://", "smtp://:25", "smtp://host:0", "smtp://host:99999",
		"smtp://host:x", "smtp://host/path", "mail.example.com:25", "smtp://u:secret@ho st",
	} {
		_, err := mailer.NewSMTP(in)
		if err == nil {
			t.Errorf("NewSMTP(%q) succeeded", in)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("NewSMTP(%q) error leaks the password: %v", in, err)
		}
	}
}

func TestSMTPSendsWithoutAuth(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	s, err := mailer.NewSMTP(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), testMessage()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("server received %d messages, want 1", len(msgs))
	}
	if msgs[0].From != "billing@example.com" || len(msgs[0].To) != 1 || msgs[0].To[0] != "zoe@example.org" {
		t.Errorf("envelope from %q to %v, want billing@example.com to [zoe@example.org]", msgs[0].From, msgs[0].To)
	}
	checkReminder(t, parseMessage(t, msgs[0].Data))
}

func TestSMTPSendsWithAuth(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{User: "worker@example.com", Password: "s3cret:/@"})
	s, err := mailer.NewSMTP(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), testMessage()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("server received %d messages, want 1", len(msgs))
	}
	checkReminder(t, parseMessage(t, msgs[0].Data))
}

// TestSMTPRefusesQuotedLocalPart: an address whose local part needs
// quoting is ErrBadRecipient before the server is contacted: go-mail
// would send it unquoted, RCPT TO:<zoe@evil.example> x@example.org>,
// which a lenient server delivers to zoe@evil.example.
func TestSMTPRefusesQuotedLocalPart(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	s, err := mailer.NewSMTP(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	m := testMessage()
	m.To = `"zoe@evil.example> x"@example.org`
	if err := s.Send(context.Background(), m); !errors.Is(err, mailer.ErrBadRecipient) {
		t.Fatalf("Send to a quoted local part = %v, want ErrBadRecipient", err)
	}
	if a := srv.Attempts(); a != 0 {
		t.Fatalf("server saw %d attempts, want 0", a)
	}
	m.To = `"zoe.mueller"@example.org` // quoting not needed: the same mailbox
	if err := s.Send(context.Background(), m); err != nil {
		t.Fatalf("Send to a quoted dot-atom: %v", err)
	}
	if msgs := srv.Messages(); len(msgs) != 1 || fmt.Sprint(msgs[0].To) != "[zoe.mueller@example.org]" {
		t.Fatalf("envelope recipients %v, want [zoe.mueller@example.org]", msgs)
	}
}

func TestSMTPAuthFailures(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{User: "worker", Password: "right"})
	for _, u := range []string{
		"smtp://worker:wrong@" + srv.Addr(), // bad password
		"smtp://" + srv.Addr(),              // no credentials where the server needs them
	} {
		s, err := mailer.NewSMTP(u)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Send(context.Background(), testMessage())
		if err == nil {
			t.Errorf("Send via %s succeeded", s)
		} else if strings.Contains(err.Error(), "wrong") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("server accepted %d messages, want 0", n)
	}
}

func TestSMTPReportsRejection(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Reject: func(attempt int) error {
		if attempt == 1 {
			return smtptest.ErrTemporary
		}
		return nil
	}})
	s, err := mailer.NewSMTP(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), testMessage()); err == nil {
		t.Fatal("first Send succeeded although the server rejected it")
	}
	if err := s.Send(context.Background(), testMessage()); err != nil {
		t.Fatalf("second Send: %v", err)
	}
	if n, a := len(srv.Messages()), srv.Attempts(); n != 1 || a != 2 {
		t.Fatalf("server accepted %d of %d attempts, want 1 of 2", n, a)
	}
}

func TestSMTPCancelledContextSendsNothing(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	s, err := mailer.NewSMTP(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Send(ctx, testMessage()); err == nil {
		t.Fatal("Send with a cancelled context succeeded")
	}
	if a := srv.Attempts(); a != 0 {
		t.Fatalf("server saw %d attempts, want 0", a)
	}
}

func TestSMTPUnreachableServer(t *testing.T) {
	t.Parallel()
	s, err := mailer.NewSMTP("smtp://127.0.0.1:1") // nothing listens on port 1
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), testMessage()); err == nil {
		t.Fatal("Send to a closed port succeeded")
	}
}

// TestSMTPAcceptedIsSentEvenIfTheConnectionDrops: a message the server
// accepted is reported sent although the connection failed right after
// (at go-mail's RSET): an error would make the reminder be sent again.
func TestSMTPAcceptedIsSentEvenIfTheConnectionDrops(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{DropAfterAccept: true})
	s, err := mailer.NewSMTP(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), testMessage()); err != nil {
		t.Fatalf("Send of an accepted message: %v", err)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Fatalf("server accepted %d messages, want 1", n)
	}
	// A message the server refuses is still an error on such a server.
	refusing := smtptest.Start(t, smtptest.Options{DropAfterAccept: true, Reject: func(int) error { return smtptest.ErrTemporary }})
	s, err = mailer.NewSMTP(refusing.URL())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), testMessage()); err == nil {
		t.Fatal("Send of a refused message succeeded")
	}
}

// TestSMTPHungServerHonoursContext: a mail server that accepts the
// connection and then hangs (no greeting; or no reply to the end of DATA)
// holds Send only until ctx ends, its deadline or its cancellation, not
// for the mailer's own timeouts (30 s per phase): a reminder's send must
// not outlive its task. Each case must end well before those 30 s.
func TestSMTPHungServerHonoursContext(t *testing.T) {
	t.Parallel()
	// No greeting: TCP accepted, nothing ever written.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-acceptDone
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	silent := "smtp://" + ln.Addr().String()

	// No reply to the end of DATA.
	stall := make(chan struct{})
	stalling := smtptest.Start(t, smtptest.Options{Stall: stall})
	t.Cleanup(func() { close(stall) })

	for _, tc := range []struct {
		name, url string
		cancel    bool // cancel ctx instead of a deadline
	}{
		{"no greeting, deadline", silent, false},
		{"no greeting, cancelled", silent, true},
		{"no reply to DATA, deadline", stalling.URL(), false},
		{"no reply to DATA, cancelled", stalling.URL(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := mailer.NewSMTP(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			if tc.cancel {
				ctx, cancel = context.WithCancel(context.Background())
				time.AfterFunc(500*time.Millisecond, cancel)
			}
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- s.Send(ctx, testMessage()) }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("Send to a hung server succeeded")
				}
				want := context.Canceled
				if !tc.cancel {
					want = context.DeadlineExceeded
				}
				if !errors.Is(err, want) {
					t.Errorf("Send: %v, want it to wrap %v", err, want)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("Send still waiting on a hung server 15 s after its context ended")
			}
		})
	}
}
