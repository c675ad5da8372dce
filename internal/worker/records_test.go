package worker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/pdf"
	"github.com/invoicing/tenantworker/tasks"
)

// TestPublicReason: a tenant is shown one of a few stable reasons, never
// the error's text (SQL errors, the mail server's user and host).
func TestPublicReason(t *testing.T) {
	t.Parallel()
	sqlErr := &pgconn.PgError{Code: "42P01", Message: `relation "tenant_acme.invoices" does not exist`}
	smtpErr := errors.New("smtp: dial billing:hunter2@mail.internal.example:587: connection refused")
	for _, tc := range []struct {
		err  error
		want string
	}{
		{worker.Permanent(fmt.Errorf("invoice 9 not found in tenant tn_x: %w", invoice.ErrNotFound)), worker.ReasonInvoiceNotFound},
		{worker.Permanent(fmt.Errorf("render: %w", pdf.ErrInvalidInvoice)), worker.ReasonInvoiceInvalid},
		{worker.Permanent(fmt.Errorf("%w: bad day", tasks.ErrInvalidPayload)), worker.ReasonInvalidTask},
		{fmt.Errorf("render invoice 1: %w", context.DeadlineExceeded), worker.ReasonTimedOut},
		{worker.Permanentf("tenant tn_x is being deleted"), worker.ReasonRefused},
		{fmt.Errorf("load invoice 1: %w", sqlErr), worker.ReasonRetriesExhausted},
		{fmt.Errorf("send reminder: %w", smtpErr), worker.ReasonRetriesExhausted},
	} {
		if got := worker.PublicReason(tc.err); got != tc.want {
			t.Errorf("PublicReason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestArchivedTaskIsRecordedForItsTenant: the worker's error handler writes
// the tenant's record of a task it archives (P15 in docs/architecture.md),
// with the public reason, and nothing for a task that will be retried.
func TestArchivedTaskIsRecordedForItsTenant(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	a := e.provision(t, "alpha", "Alpha Tools")
	rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	records := tasks.NewTaskRecords(rdb, tasks.TaskRecordsOptions{})
	startWorker(t, e, e.h, worker.ServerOptions{Concurrency: 2, Records: records})

	r, err := e.enqueuer.Enqueue(e.ctx, tasks.InvoicePDF{TenantID: a.ID, InvoiceID: 999})
	if err != nil {
		t.Fatal(err)
	}
	info := testenv.WaitTaskState(t, e.inspector, tasks.QueueDefault, r.Info.ID, asynq.TaskStateArchived)
	var rec tasks.TaskRecord
	deadline := time.Now().Add(time.Minute)
	for {
		if rec, err = records.Get(e.ctx, a.ID, r.Info.ID); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("no record of the archived task %s (last error %q): %v", r.Info.ID, info.LastErr, err)
	}
	if rec.Reason != worker.ReasonInvoiceNotFound || rec.Type != tasks.TypeInvoicePDF || rec.Queue != tasks.QueueDefault || rec.TaskID != r.Info.ID || rec.ArchivedAt.IsZero() {
		t.Errorf("record %+v", rec)
	}
	if _, err := records.Get(e.ctx, e.provision(t, "bravo", "Bravo").ID, r.Info.ID); !errors.Is(err, tasks.ErrTaskNotFound) {
		t.Errorf("another tenant sees the record: %v", err)
	}
}
