package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
)

// gatedMailer holds every Send until release is closed, then counts it as
// sent; started is closed when the first Send begins.
type gatedMailer struct {
	started chan struct{}
	release chan struct{}
	once    atomic.Bool
	sent    atomic.Int32
}

func (m *gatedMailer) Send(ctx context.Context, _ mailer.Message) error {
	if m.once.CompareAndSwap(false, true) {
		close(m.started)
	}
	select {
	case <-m.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	m.sent.Add(1)
	return nil
}

// TestReminderSendOutlastingIdleInTransactionTimeoutSendsOnce: the
// reminder's transaction stays open, idle, while the mail server takes the
// message. A server whose idle_in_transaction_session_timeout is shorter
// than a send (an operator's guard against forgotten sessions) must not
// end that transaction under the send: the email went out, so the day's
// row must say sent and a run after it must send nothing. Before, the
// server ended the session, the record failed with it (25P03), the task
// was retried and the retry sent a second email.
func TestReminderSendOutlastingIdleInTransactionTimeoutSendsOnce(t *testing.T) {
	t.Parallel()
	m := &gatedMailer{started: make(chan struct{}), release: make(chan struct{})}
	e := newHandlerEnvSetting(t, m, "idle_in_transaction_session_timeout", "250") // milliseconds
	tn := e.provision(t, "idle-send", "Idle Send GmbH")
	id := e.addInvoice(t, tn, acmeCustomer, acmeInvoice)
	p := tasks.InvoiceReminder{TenantID: tn.ID, InvoiceID: id, Day: tn.Day(e.now())}

	var released atomic.Bool
	release := func() {
		if released.CompareAndSwap(false, true) {
			close(m.release)
		}
	}
	t.Cleanup(release)
	done := make(chan error, 1)
	go func() { done <- e.work(p) }()
	select {
	case <-m.started:
	case err := <-done:
		t.Fatalf("reminder ended before its send: %v", err)
	}
	// The send goes on until the reminder's session has been idle in its
	// transaction for 8 times the server's timeout, or the server ended it.
	var killed bool
	testenv.WaitFor(t, 30*time.Second, "the reminder's session idle in its transaction past the timeout, or ended", func() bool {
		var idle, longIdle int
		err := e.pool.QueryRow(e.ctx, `SELECT count(*), count(*) FILTER (WHERE state_change < pg_catalog.now() - interval '2 s')
			FROM pg_catalog.pg_stat_activity
			WHERE datname = pg_catalog.current_database() AND state = 'idle in transaction'`).Scan(&idle, &longIdle)
		if err != nil {
			t.Fatal(err)
		}
		killed = idle == 0
		return killed || longIdle > 0
	})
	release()
	if err := <-done; err != nil {
		t.Errorf("reminder whose send outlasted idle_in_transaction_session_timeout (session ended by the server: %t): %v, want nil", killed, err)
	}
	if rows := e.reminderRows(t, tn, id); len(rows) != 1 || rows[0].Status != "sent" {
		t.Errorf("reminder rows %+v, want one sent", rows)
	}
	if err := e.work(p); err != nil {
		t.Errorf("reminder run again: %v", err)
	}
	if n := m.sent.Load(); n != 1 {
		t.Errorf("%d emails sent, want 1", n)
	}
}
