package tasks

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestEnqueueEndedLateFailureIsLoggedWhenEveryTaskHasAResult: without fair
// dispatch, a bulk enqueue whose tasks were all found or applied can still
// fail afterwards, when the follow-up of a running render cannot be
// enqueued (enqueueMany returns every result and followRunning's error).
// Its caller gave up: the failure, counted as failed, must be logged; it
// was dropped, only "applied" lines were written.
func TestEnqueueEndedLateFailureIsLoggedWhenEveryTaskHasAResult(t *testing.T) {
	t.Parallel()
	var logs testenv.LogBuffer
	e := NewEnqueuer(nil, nil, slog.New(slog.NewJSONHandler(&logs, nil)))
	payloads := []Payload{InvoicePDF{TenantID: "tn_acme", InvoiceID: 1}, InvoicePDF{TenantID: "tn_acme", InvoiceID: 2}}
	release := make(chan struct{})
	// The enqueue ends only after detached returned to its caller (had it
	// ended as the caller gave up, detached could return either).
	returned := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	errFollowUp := errors.New("enqueue follow-up of running task: injected")
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	_, err := e.detached(ctx, "enqueue 2 tasks of tenant tn_acme", payloads, func(context.Context) ([]EnqueueResult, error) {
		<-returned
		defer close(release)
		var res []EnqueueResult
		for _, p := range payloads {
			res = append(res, EnqueueResult{Info: &asynq.TaskInfo{ID: p.Spec().TaskID, Type: p.TypeName(), Queue: "default", State: asynq.TaskStateActive}, Existing: true})
		}
		return res, errFollowUp
	})
	close(returned)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("detached after its caller gave up: %v", err)
	}
	<-release
	if err := e.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.late.failed.Load() != 1 {
		t.Fatalf("late failed count %d, want 1", e.late.failed.Load())
	}
	if !strings.Contains(logs.String(), "injected") {
		t.Errorf("the enqueue counted as failed after its caller gave up logged no error:\n%s", logs.String())
	}
}
