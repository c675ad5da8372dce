package mailer

import (
	"context"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
)

// TestSMTPWaitsForTheVerdictUntilCtxEnds: Send waits for the server's
// verdict on a message until its ctx's deadline, as its doc and
// docs/guarantees.md say (a reminder's send: 50 s of its minute), not for
// go-mail's timeout, which go-mail sets once before MAIL FROM for the whole
// transaction (30 s for MAIL FROM, RCPT TO, the upload of the message, up
// to 27 MB for a 20 MiB PDF, and the server's verdict). A server that takes
// longer than that but less than ctx allows (a large attachment on a slow
// link, a relay that scans it) accepted the message, and the error made the
// reminder be sent again, at each retry. The timeout is scaled down here:
// 300 ms for go-mail's 30 s.
func TestSMTPWaitsForTheVerdictUntilCtxEnds(t *testing.T) {
	t.Parallel()
	stall := make(chan struct{})
	srv := smtptest.Start(t, smtptest.Options{Stall: stall})
	verdict := time.AfterFunc(time.Second, func() { close(stall) })
	t.Cleanup(func() {
		if verdict.Stop() {
			close(stall)
		}
	})
	s, err := NewSMTP(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	s.timeout = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := Message{From: "billing@example.com", To: "zoe@example.org", Subject: "Reminder", Text: "Amount due: EUR 1.00\n", MessageID: "<r-1@example.com>"}
	if err := s.Send(ctx, m); err != nil {
		t.Fatalf("Send to a server that gives its verdict after 1 s, with 10 s left: %v", err)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Fatalf("server accepted %d messages, want 1", n)
	}
}
