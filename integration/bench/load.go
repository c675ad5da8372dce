package main

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// loadResult is a closed-loop load run: how many operations, how long, and
// each operation's latency (sorted).
type loadResult struct {
	n       int
	elapsed time.Duration
	lat     []time.Duration
}

// rate returns operations per second.
func (r loadResult) rate() float64 { return float64(r.n) / r.elapsed.Seconds() }

// runClosedLoop runs op(i) for i in [0, n) from clients goroutines, each
// starting its next operation when its last one returned. It stops at the
// first error.
func runClosedLoop(ctx context.Context, clients, n int, op func(ctx context.Context, i int) error) (loadResult, error) {
	var (
		next  atomic.Int64
		mu    sync.Mutex
		all   = make([]time.Duration, 0, n)
		first error
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	for range clients {
		wg.Go(func() {
			lat := make([]time.Duration, 0, n/clients+1)
			defer func() {
				mu.Lock()
				all = append(all, lat...)
				mu.Unlock()
			}()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				if err := op(ctx, i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					cancel()
					return
				}
				lat = append(lat, time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first != nil {
		return loadResult{}, first
	}
	if err := ctx.Err(); err != nil {
		return loadResult{}, err
	}
	slices.Sort(all)
	return loadResult{n: n, elapsed: elapsed, lat: all}, nil
}
