package integration

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ack is one request the enqueue service acknowledged (202): when it was
// sent and when its answer came.
type ack struct {
	id       string
	sent, at time.Time
}

// pacedLoad asks for the PDF of one invoice after the other of a tenant,
// one request every 10 ms (about 100/s), until it is stopped or has asked
// for every invoice, and records what the enqueue service acknowledged
// and what it refused. The fault tests run one while they break a server.
type pacedLoad struct {
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu       sync.Mutex
	accepted []ack
	refused  map[int]int // by status; 0: no answer
}

// startPacedLoad starts the load on invoices 1..n of tn; it is stopped at
// the end of the test at the latest.
func startPacedLoad(t *testing.T, s *stack, tn tenantRef, n int) *pacedLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &pacedLoad{stop: cancel, refused: map[int]int{}}
	t.Cleanup(func() { l.stop(); l.wg.Wait() })
	var next atomic.Int64
	l.wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			id := int(next.Add(1))
			if id > n {
				return
			}
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			sent := time.Now()
			status, e, err := s.post(rctx, tn, "pdf", id)
			cancel()
			l.mu.Lock()
			if err == nil && status == http.StatusAccepted {
				l.accepted = append(l.accepted, ack{e.TaskID, sent, time.Now()})
			} else {
				l.refused[status]++
			}
			l.mu.Unlock()
		}
	})
	return l
}

// count is how many requests were acknowledged so far.
func (l *pacedLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted)
}

// waitAccepted waits until n more requests than now were acknowledged.
func (l *pacedLoad) waitAccepted(t *testing.T, n int, within time.Duration, what string) {
	t.Helper()
	before := l.count()
	eventually(t, within, 50*time.Millisecond, what, func() error {
		if got := l.count() - before; got < n {
			return fmt.Errorf("%d accepted", got)
		}
		return nil
	})
}

// finish stops the load and returns what was acknowledged, in order, and
// the refusals by status.
func (l *pacedLoad) finish() ([]ack, map[int]int) {
	l.stop()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]ack(nil), l.accepted...), maps.Clone(l.refused)
}

// ackIDs are the task ids of acks.
func ackIDs(acks []ack) []string {
	out := make([]string, len(acks))
	for i, a := range acks {
		out[i] = a.id
	}
	return out
}

// waitRecovered waits until the enqueue service and every worker answer
// /readyz 200, and fails the test if one of them exited.
func (s *stack) waitRecovered(t *testing.T, within time.Duration, after string) {
	t.Helper()
	for _, p := range append([]*proc{s.enqueue}, s.workers...) {
		if err := p.waitStatus("/readyz", http.StatusOK, within); err != nil {
			t.Fatalf("%s after %s: %v", p.name, after, err)
		}
		if !p.running() {
			t.Fatalf("%s exited during %s", p.name, after)
		}
	}
}
