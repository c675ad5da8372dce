package mailer_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/mailer"
)

// TestSendClosesConnectionWhenSetupFails: a server that refuses STARTTLS
// (454, advertised but unavailable), or both EHLO and HELO (554 after the
// greeting), sees the client close its connection once Send has returned.
// go-mail returns such errors without closing the connection it dialed,
// which stayed open (until a finalizer, or while Send's ctx lived): each
// retry of a reminder left one more socket on both sides.
func TestSendClosesConnectionWhenSetupFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, ehlo, helo, starttls string }{
		{"STARTTLS refused", "250-localhost\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n", "250 localhost\r\n", "454 4.7.0 TLS not available due to temporary reason\r\n"},
		{"EHLO and HELO refused", "554 5.7.1 go away\r\n", "554 5.7.1 go away\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr, closed := rawSMTPServer(t, func(c net.Conn, line string) {
				switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
				case strings.HasPrefix(cmd, "EHLO"):
					c.Write([]byte(tc.ehlo))
				case strings.HasPrefix(cmd, "HELO"):
					c.Write([]byte(tc.helo))
				case strings.HasPrefix(cmd, "STARTTLS"):
					c.Write([]byte(tc.starttls))
				case strings.HasPrefix(cmd, "QUIT"):
					c.Write([]byte("221 bye\r\n"))
				default:
					c.Write([]byte("502 no\r\n"))
				}
			})
			s, err := mailer.NewSMTP("smtp://" + addr)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			err = s.Send(ctx, mailer.Message{From: "billing@example.com", To: "a@example.org", Subject: "x", Text: "x"})
			cancel() // as InvoiceReminder's sendCtx ends when Send returns
			if err == nil {
				t.Fatal("Send succeeded")
			}
			t.Logf("Send: %v", err)
			select {
			case <-closed:
			case <-time.After(3 * time.Second): // a bound for the failure message, not a measurement
				t.Fatal("the client still holds its connection 3 s after Send failed (connection leak)")
			}
		})
	}
}
