// Package readiness runs a process's readiness checks for its /readyz
// route: every dependency's probe at once, each bounded by a deadline the
// probe cannot overrun.
package readiness

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Check probes one dependency; nil means it answered.
type Check func(ctx context.Context) error

// Run runs checks concurrently, each under a deadline of timeout from ctx,
// and returns the error of each check that failed, by name (an empty map
// when all passed). Run returns within timeout even when a check ignores
// its context (go-redis without ContextTimeoutEnabled waits its read
// timeout, and retries, past the deadline): such a check fails with
// context.DeadlineExceeded and is left to finish on its own.
func Run(ctx context.Context, checks map[string]Check, timeout time.Duration) map[string]error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		failed = map[string]error{}
	)
	for name, check := range checks {
		wg.Go(func() {
			if err := bounded(ctx, check, timeout); err != nil {
				mu.Lock()
				failed[name] = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return failed
}

// bounded returns check's error, or ctx's once ctx ends first.
func bounded(ctx context.Context, check Check, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- check(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no answer within %v: %w", timeout, ctx.Err())
	}
}
