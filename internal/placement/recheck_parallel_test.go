package placement_test

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
)

// Modes of a switchProxy.
const (
	proxyDown    = iota // a connection is closed at once
	proxyForward        // a connection is passed on to the server
	proxyHold           // a connection is held without an answer (holders)
)

// holders records the connections the proxies of a test hold without an
// answer, by proxy; once every proxy holds one at the same time, all
// (proxies) is closed and the held connections are closed.
type holders struct {
	proxies int
	mu      sync.Mutex
	held    map[int]net.Conn
	once    sync.Once
	all     chan struct{}
}

func (h *holders) hold(i int, c net.Conn) {
	h.mu.Lock()
	h.held[i] = c
	if len(h.held) == h.proxies {
		h.once.Do(func() { close(h.all) })
		for _, c := range h.held {
			_ = c.Close()
		}
		clear(h.held)
	}
	h.mu.Unlock()
	// The client giving up (its ctx) closes it: no longer held.
	_, _ = io.Copy(io.Discard, c)
	h.mu.Lock()
	if h.held[i] == c {
		delete(h.held, i)
	}
	h.mu.Unlock()
	_ = c.Close()
}

// switchProxy starts a TCP proxy to target on loopback whose mode (the
// constants above) the test sets, and returns its address.
func switchProxy(t *testing.T, target string, i int, mode *atomic.Int32, h *holders) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			switch mode.Load() {
			case proxyDown:
				_ = c.Close()
			case proxyHold:
				go h.hold(i, c)
			default:
				go func() {
					defer func() { _ = c.Close() }()
					s, err := net.Dial("tcp", target)
					if err != nil {
						return
					}
					defer func() { _ = s.Close() }()
					go func() { _, _ = io.Copy(s, c); _ = s.Close() }()
					_, _ = io.Copy(c, s)
				}()
			}
		}
	}()
	return ln.Addr().String()
}

// TestUnusableDatabasesAreRecheckedAtOnce: Choose checks again all the
// unusable databases whose re-check is due at once, not one after the
// other: with two whose servers now hold every connection without an
// answer, a provisioning request waits for one chooseTimeout, not for
// one per database (each re-check here is seen held while the other is,
// and then let go, once both are held).
func TestUnusableDatabasesAreRecheckedAtOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	main := catalogPool(t)
	var mode atomic.Int32
	h := &holders{proxies: 2, held: map[int]net.Conn{}, all: make(chan struct{})}
	urls := map[string]string{}
	for i, name := range []string{"late1", "late2"} {
		u, err := url.Parse(testenv.PostgresAs(t, false)) // no CREATE: unusable once checked
		if err != nil {
			t.Fatal(err)
		}
		u.Host = switchProxy(t, u.Host, i, &mode, h)
		urls[name] = u.String()
	}
	log := &testenv.LogBuffer{}
	const every = 50 * time.Millisecond
	r := placement.New(placement.Options{MainPool: main, URLs: urls, Catalog: storage.NewPostgres(main),
		MaxConns: 2, Logger: slog.New(slog.NewTextHandler(log, nil)), RecheckInterval: every})
	t.Cleanup(func() { _ = r.Close() })
	if err := r.CheckConfigured(ctx); err != nil { // both down: checked later
		t.Fatalf("CheckConfigured with the databases down: %v", err)
	}
	if err := r.Register(ctx); err != nil {
		t.Fatal(err)
	}
	mode.Store(proxyForward)
	if name, err := r.Choose(ctx, ""); err != nil || name != "main" {
		t.Fatalf("Choose() = %q, %v; want main", name, err)
	}
	for _, name := range []string{"late1", "late2"} {
		if err := r.Unusable()[name]; !errors.Is(err, placement.ErrMayNotCreateSchemas) {
			t.Fatalf("Unusable()[%s] = %v; want its missing privilege; log:\n%s", name, err, log)
		}
	}
	for _, name := range []string{"late1", "late2"} {
		p, err := r.Pool(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		p.Reset() // no idle connection: a re-check dials
	}
	mode.Store(proxyHold)
	time.Sleep(2 * every) // both re-checks due
	chooseMainWhileHeld(t, r, h, "two re-checks")
	if u := r.Unusable(); len(u) != 2 {
		t.Errorf("Unusable() = %v, want late1 and late2", u)
	}
}

// chooseMainWhileHeld calls Choose with both of h's proxies holding their
// connections without an answer and checks that it chose "main" within
// one check's bound: each of the two checks (what) waits for its server up
// to chooseTimeout (5 s), so one after the other the first waits that
// long before the second is made; at once, both are held and let go at
// once.
func chooseMainWhileHeld(t *testing.T, r *placement.Registry, h *holders, what string) {
	t.Helper()
	start := time.Now()
	if name, err := r.Choose(t.Context(), ""); err != nil || name != "main" {
		t.Errorf("Choose() = %q, %v with %s held; want main", name, err, what)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("Choose() took %v with %s held: they ran one after the other", took, what)
	}
	select {
	case <-h.all:
	default:
		t.Errorf("the %s did not run at once", what)
	}
}
