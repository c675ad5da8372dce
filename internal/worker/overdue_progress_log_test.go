package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/tasks"
)

// TestOverdueSweepLogsItsProgress: invoices:overdue logs at info every
// ten pages of reminders it enqueues, with the tenant, the task and the
// reminders enqueued so far, so that an operator sees a long sweep of a
// large tenant move. It logged once, at the end. Pages of one invoice
// here: 25 overdue invoices log progress after pages 10 and 20.
func TestOverdueSweepLogsItsProgress(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme")
	e.inTenant(t, acme, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO customers (name, email) VALUES ('c', 'c@example.org')`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO invoices (number, customer_id, status, currency, due_date, amount)
			SELECT 'N' || g, (SELECT id FROM customers), 'overdue', 'EUR', timestamptz '2026-02-01 00:00Z', 10
			  FROM generate_series(1, 25) g`)
		return err
	})
	e.setToday(t, "2026-03-01")
	worker.SetPageSize(e.h, 1)
	var logs bytes.Buffer
	w := workertest.New(e.h, worker.MuxOptions{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err := w.Work(e.ctx, tasks.InvoicesOverdue{TenantID: acme.ID}); err != nil {
		t.Fatalf("invoices:overdue: %v", err)
	}
	var progress []map[string]any
	for line := range strings.Lines(logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == "overdue invoices: enqueueing reminders" {
			progress = append(progress, rec)
		}
	}
	if len(progress) != 2 {
		t.Fatalf("%d progress logs, want 2 (after pages 10 and 20); logs:\n%s", len(progress), logs.String())
	}
	for i, rec := range progress {
		want := float64(10 * (i + 1))
		if rec["level"] != "INFO" || rec["tenant_id"] != acme.ID || rec["task_type"] != "invoices:overdue" || rec["task_id"] == nil ||
			rec["pages"] != want || rec["reminders_enqueued"] != want {
			t.Errorf("progress log %d = %v; want info with tenant_id %s, task_type invoices:overdue, a task_id, pages and reminders_enqueued %v", i, rec, acme.ID, want)
		}
	}
}
