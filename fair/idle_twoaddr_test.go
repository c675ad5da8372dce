package fair_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestWaiterStaysOnAServerReachedAtTwoAddresses: one Redis reached at two
// addresses (a DNS name with two records, two proxies before one
// server); the client's dials alternate between them. No server moved,
// so the waiter must keep its subscription.
func TestWaiterStaysOnAServerReachedAtTwoAddresses(t *testing.T) {
	t.Parallel()
	addr := testenv.Redis(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() { // a proxy: the second address of the same server
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				_ = c.Close()
				continue
			}
			go func() { _, _ = io.Copy(s, c); _ = s.Close() }()
			go func() { _, _ = io.Copy(c, s); _ = c.Close() }()
		}
	}()
	addrs := []string{addr, l.Addr().String()}
	var n atomic.Int64
	rdb := redis.NewClient(&redis.Options{Addr: "redis.example:6379", Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addrs[n.Add(1)%2])
	}})
	t.Cleanup(func() { _ = rdb.Close() })
	var logs testenv.LogBuffer
	w := fair.NewIdleWaiter(rdb, []string{q}, fair.IdleOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	rdb.AddHook(w.Hook())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testenv.WaitFor(t, 10*time.Second, "the subscription", func() bool { return w.Stats().Subscribed })
	// The pool grows: several connections dialed at once.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = rdb.Do(context.Background(), "DEBUG", "SLEEP", "0.05").Err()
		}()
	}
	wg.Wait()
	time.Sleep(200 * time.Millisecond)
	if moved := strings.Count(logs.String(), "the Redis server moved"); moved > 0 {
		t.Fatalf("the waiter resubscribed %d times though no server moved:\n%s", moved, logs.String())
	}
}
