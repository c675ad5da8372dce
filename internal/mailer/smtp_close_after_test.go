package mailer_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/mailer"
)

// TestSendClosesConnectionWhenServerHangs: a server that stops answering
// once connected (after the end of DATA: no verdict on the message; or
// after accepting it: no answer to the RSET that follows) sees the client
// close its connection once Send has returned at its ctx's deadline. The
// QUIT sent on the way out fails there too (the connection's deadline is
// past), and go-mail closes the connection only after a QUIT that
// succeeded: each such send left a socket open on both sides until a
// finalizer ran, holding one of the server's connection slots.
func TestSendClosesConnectionWhenServerHangs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		dataReply string // the reply to the end of DATA; "" hangs
		wantErr   bool
	}{
		{"no verdict on the message", "", true},
		{"no answer after accepting it", "250 2.0.0 queued\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inData, hung := false, false
			addr, closed := rawSMTPServer(t, func(c net.Conn, line string) {
				if hung {
					return // reads, never answers
				}
				if inData {
					if line == ".\r\n" {
						inData = false
						if tc.dataReply != "" {
							c.Write([]byte(tc.dataReply))
						}
						hung = true // no verdict, or no answer to RSET or QUIT
					}
					return
				}
				switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
				case strings.HasPrefix(cmd, "EHLO"):
					c.Write([]byte("250-localhost\r\n250 8BITMIME\r\n"))
				case strings.HasPrefix(cmd, "MAIL"), strings.HasPrefix(cmd, "RCPT"), cmd == "NOOP", cmd == "RSET":
					c.Write([]byte("250 ok\r\n"))
				case cmd == "DATA":
					inData = true
					c.Write([]byte("354 go ahead\r\n"))
				case cmd == "QUIT":
					c.Write([]byte("221 bye\r\n"))
				default:
					c.Write([]byte("502 no\r\n"))
				}
			})
			s, err := mailer.NewSMTP("smtp://" + addr)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err = s.Send(ctx, mailer.Message{From: "billing@example.com", To: "a@example.org", Subject: "x", Text: "x"})
			if (err != nil) != tc.wantErr {
				t.Fatalf("Send: %v, want error: %v", err, tc.wantErr)
			}
			t.Logf("Send: %v", err)
			// Send's ctx lives on, as InvoiceReminder's finish context
			// does while it records the outcome.
			defer cancel()
			select {
			case <-closed:
			case <-time.After(3 * time.Second): // a bound for the failure message, not a measurement
				t.Fatal("the client still holds its connection 3 s after Send returned (connection leak)")
			}
		})
	}
}
