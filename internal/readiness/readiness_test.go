package readiness

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRunReportsEachFailedCheckByName(t *testing.T) {
	boom := errors.New("connection refused")
	failed := Run(context.Background(), map[string]Check{
		"redis":    func(context.Context) error { return nil },
		"postgres": func(context.Context) error { return boom },
	}, time.Second)
	if len(failed) != 1 || !errors.Is(failed["postgres"], boom) {
		t.Fatalf("failed = %v, want only postgres: %v", failed, boom)
	}
	if failed := Run(context.Background(), nil, time.Second); len(failed) != 0 {
		t.Fatalf("no checks: failed = %v, want none", failed)
	}
}

// A check that ignores its context must not hold the answer: it fails
// with the deadline once timeout passes.
func TestRunEndsAtTheDeadlineOfACheckThatIgnoresIt(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	failed := Run(context.Background(), map[string]Check{
		"stalled": func(context.Context) error { <-release; return nil },
		"fine":    func(context.Context) error { return nil },
	}, 50*time.Millisecond)
	if err := failed["stalled"]; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stalled check: err = %v, want the deadline", err)
	}
	if _, ok := failed["fine"]; ok || len(failed) != 1 {
		t.Fatalf("failed = %v, want only the stalled check", failed)
	}
}
