package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/tasks"
)

// TestForgetRecordFailureLogNamesTheTask: when the tenant's record of a
// completed task cannot be dropped (Redis refuses), the warning carries
// the task's tenant_id, task_id and task_type, as every line on a task's
// path does (README, LOG_FORMAT): an operator filtering the log by task
// type finds it.
func TestForgetRecordFailureLogNamesTheTask(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there: every command fails at once
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	records := tasks.NewTaskRecords(rdb, tasks.TaskRecordsOptions{})
	var logs bytes.Buffer
	mw := worker.ForgetRecordOnSuccess(records, slog.New(slog.NewJSONHandler(&logs, nil)))
	h := mw(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil }))
	payload, err := json.Marshal(tasks.InvoicePDF{TenantID: "tn_abc", InvoiceID: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ProcessTask(context.Background(), asynq.NewTask(tasks.TypeInvoicePDF, payload)); err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("log %q: %v", logs.String(), err)
	}
	for _, k := range []string{"tenant_id", "task_id", "task_type"} {
		if _, ok := line[k]; !ok {
			t.Errorf("warning %q lacks %s: %s", line["msg"], k, logs.String())
		}
	}
}
