package worker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/tasks"
)

// TestRendersOfOneInvoiceRunInTurnOnARepeatableReadDatabase: on a
// database whose default_transaction_isolation is repeatable read or
// serializable (an operator's ALTER DATABASE, or a role's setting), a
// second render of an invoice that waited for the first one's render lock
// (the follow-up of an edit made while the first ran) loads the invoice
// and its document row as the first one committed them, and records the
// edited invoice's document: both succeed, the stored row is the file's,
// and a third run finds it unchanged. The render's transaction runs at
// read committed, which its protocol (lock, then load) is made for.
// Before, its snapshot was taken by the pin's statement, before the wait:
// it wrote its file over the first one's and was then refused at its
// record (SQLSTATE 40001, the first one's row being newer than its
// snapshot), a failure counted and retried, the row meanwhile describing
// another file than the one stored.
func TestRendersOfOneInvoiceRunInTurnOnARepeatableReadDatabase(t *testing.T) {
	t.Parallel()
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			u, err := url.Parse(testenv.Postgres(t))
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			q.Set("default_transaction_isolation", level)
			u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20") // pgx reads + as itself
			e := newHandlerEnvOn(t, nil, u.String())
			acme := e.provision(t, "turns", "Turns Ltd")
			id := e.addInvoice(t, acme, acmeCustomer, acmeInvoice)
			inRender, resume := make(chan struct{}), make(chan struct{})
			var resumed sync.Once
			release := func() { resumed.Do(func() { close(resume) }) }
			defer release()
			slow := *e.h
			worker.SetBeforeRender(&slow, func(context.Context) {
				close(inRender)
				<-resume
			})
			p := tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}
			first := make(chan error, 1)
			go func() { first <- workertest.New(&slow, worker.MuxOptions{Logger: discardLogger()}).Work(e.ctx, p) }()
			<-inRender // the first render loaded the invoice and holds its render lock
			e.inTenant(t, acme, func(ctx context.Context, tx pgx.Tx) error {
				_, err := tx.Exec(ctx, "UPDATE invoices SET notes = 'Edited during the render.' WHERE id = $1", id)
				return err
			})
			second := make(chan error, 1)
			go func() { second <- e.w.Work(e.ctx, p) }()
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
				waiting, err := testenv.LockWaiters(e.ctx, e.pool, "pg_advisory_xact_lock(pg_catalog.hashtextextended(", "advisory")
				if err != nil {
					t.Fatal(err)
				}
				if waiting > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the second render did not wait for the first one's lock")
				}
			}
			release()
			if err := <-first; err != nil {
				t.Errorf("first render: %v", err)
			}
			if err := <-second; err != nil {
				t.Errorf("second render, which waited for the first: %v", err)
			}
			row, ok := e.documentRow(t, acme, id)
			if !ok {
				t.Fatal("no document row")
			}
			data := e.readDocument(t, acme, row.StorageKey)
			if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != row.SHA256 || int64(len(data)) != row.Bytes {
				t.Errorf("stored file: %d bytes, sha256 %x; its row says %d bytes, %s", len(data), sum, row.Bytes, row.SHA256)
			}
			if text := pdfToText(t, data); !strings.Contains(text, "Edited during the render.") {
				t.Errorf("stored PDF lacks the edit:\n%s", text)
			}
			if r := e.workResult(t, p); !r.Unchanged {
				t.Errorf("third run %+v: want unchanged (the stored document is the edited invoice's)", r)
			}
		})
	}
}
