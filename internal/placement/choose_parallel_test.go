package placement_test

import (
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
)

// TestChooseChecksCandidatesAtOnce: Choose checks the databases it may
// place a new tenant on all at once, not one after the other: with two
// candidates before "main" whose servers hold every connection without an
// answer, a provisioning request waits for one check's bound
// (chooseTimeout), not for one per candidate (each check here is seen
// held while the other is, and then let go, once both are held), and
// "main", the next by the placement's order, is chosen. The checks open
// no pool.
func TestChooseChecksCandidatesAtOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	main := catalogPool(t)
	catalog := storage.NewPostgres(main)
	var mode atomic.Int32
	mode.Store(proxyHold)
	h := &holders{proxies: 2, held: map[int]net.Conn{}, all: make(chan struct{})}
	for i, name := range []string{"a1", "a2"} { // before "main": same load, by name
		addr := switchProxy(t, "127.0.0.1:1", i, &mode, h)
		if _, err := catalog.AddDatabase(ctx, name, "postgres://app@"+addr+"/invoicing?sslmode=disable"); err != nil {
			t.Fatal(err)
		}
	}
	log := &testenv.LogBuffer{}
	r := placement.New(placement.Options{MainPool: main, Catalog: catalog, MaxConns: 2,
		Logger: slog.New(slog.NewTextHandler(log, nil)), RefreshInterval: -1})
	t.Cleanup(func() { _ = r.Close() })
	chooseMainWhileHeld(t, r, h, "checks of two candidates")
	// A check opens no pool (with KeepConns one would keep MaxConns
	// connections to every candidate).
	if open := r.Open(); len(open) != 1 {
		t.Errorf("Open() = %v after Choose; want main only", open)
	}
	if n := strings.Count(log.String(), "does not answer, skipped"); n != 2 {
		t.Errorf("%d lines saying a candidate was skipped, want one each for a1 and a2:\n%s", n, log)
	}
}

// TestChooseDoesNotWaitForABusyPool: Choose's check of a database does
// not wait for a connection of its pool, which its tenants' work may all
// hold (the check would wait until chooseTimeout and then skip a database
// that answers): it is made on a connection of its own, so the least
// loaded database is chosen at once while its pool is busy.
func TestChooseDoesNotWaitForABusyPool(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	main := catalogPool(t)
	catalog := storage.NewPostgres(main)
	if _, err := catalog.AddDatabase(ctx, "busy", testenv.PostgresAs(t, true)); err != nil {
		t.Fatal(err)
	}
	log := &testenv.LogBuffer{}
	r := placement.New(placement.Options{MainPool: main, Catalog: catalog, MaxConns: 2,
		Logger: slog.New(slog.NewTextHandler(log, nil)), RefreshInterval: -1})
	t.Cleanup(func() { _ = r.Close() })
	p, err := r.Pool(ctx, "busy")
	if err != nil {
		t.Fatal(err)
	}
	for range p.Config().MaxConns {
		c, err := p.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Release)
	}
	start := time.Now()
	if name, err := r.Choose(ctx, ""); err != nil || name != "busy" {
		t.Errorf("Choose() = %q, %v with busy's pool held; want busy (it answers); log:\n%s", name, err, log)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("Choose() took %v: it waited for a connection of busy's pool", took)
	}
	if p.Stat().TotalConns() != p.Config().MaxConns {
		t.Errorf("busy's pool has %d connections, want its %d held ones only", p.Stat().TotalConns(), p.Config().MaxConns)
	}
}

// TestChooseKeepsItsOrderWhenALaterCandidateAnswersFirst: checked at
// once, the candidates are still taken in the placement's order (fewest
// tenants, then by name): the first one that answers by that order is
// chosen, even when one after it ("main", which needs no check) answered
// long before it.
func TestChooseKeepsItsOrderWhenALaterCandidateAnswersFirst(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	main := catalogPool(t)
	catalog := storage.NewPostgres(main)
	dbURL := testenv.PostgresAs(t, true)
	slowURL, accepted, answer := gatedProxy(t, dbURL)
	if _, err := catalog.AddDatabase(ctx, "a1", slowURL); err != nil {
		t.Fatal(err)
	}
	r := placement.New(placement.Options{MainPool: main, Catalog: catalog, MaxConns: 2, RefreshInterval: -1})
	t.Cleanup(func() { _ = r.Close() })
	chosen := make(chan string, 1)
	go func() {
		name, err := r.Choose(ctx, "")
		if err != nil {
			t.Error(err)
		}
		chosen <- name
	}()
	<-accepted // a1's check is held: "main" has answered meanwhile
	select {
	case name := <-chosen:
		t.Errorf("Choose() = %q before a1 answered; want it to wait for a1", name)
		return
	case <-time.After(50 * time.Millisecond):
	}
	answer()
	if name := <-chosen; name != "a1" {
		t.Errorf("Choose() = %q; want a1, the least loaded that answers, by name before main", name)
	}
}

// gatedProxy returns dbURL with its host replaced by a proxy on loopback
// that passes connections on to it only once answer was called (at the
// latest when the test ends), and a channel closed when the proxy accepted
// its first connection.
func gatedProxy(t *testing.T, dbURL string) (string, <-chan struct{}, func()) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	host := u.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted, gate := make(chan struct{}), make(chan struct{})
	var once sync.Once
	answer := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(func() { answer(); _ = ln.Close() })
	var first atomic.Bool
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if first.CompareAndSwap(false, true) {
				close(accepted)
			}
			go func() {
				defer func() { _ = c.Close() }()
				<-gate
				s, err := net.Dial("tcp", host)
				if err != nil {
					return
				}
				defer func() { _ = s.Close() }()
				go func() { _, _ = io.Copy(s, c); _ = s.Close() }()
				_, _ = io.Copy(c, s)
			}()
		}
	}()
	u.Host = ln.Addr().String()
	return u.String(), accepted, answer
}
