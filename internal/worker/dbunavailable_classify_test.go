package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// brokenProxy listens on loopback and, per connection, closes it at once
// ("close": a proxy or load balancer whose database is gone), or forwards
// it to target until cut is called, which resets every forwarded
// connection ("forward": a connection dropped mid-query without a word
// from the server).
func brokenProxy(t *testing.T, mode, target string) (addr string, cut func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	forwarded := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if mode == "close" {
				c.Close()
				continue
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			forwarded <- c
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
	return ln.Addr().String(), func() {
		for {
			select {
			case c := <-forwarded:
				_ = c.(*net.TCPConn).SetLinger(0) // RST, not FIN
				c.Close()
			default:
				return
			}
		}
	}
}

// runThroughChain runs fn as a tenant task's handler behind the production
// chain and returns the attempt's error.
func runThroughChain(t *testing.T, fn func(ctx context.Context) error) error {
	t.Helper()
	catalog := memstore.New()
	tn := addTenant(t, catalog, "classify", tenantctx.StatusActive)
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error { return fn(ctx) }),
	})
	payload, _ := json.Marshal(tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return mux.ProcessTask(ctx, asynq.NewTask(tasks.TypeInvoicePDF, payload))
}

// execOn runs SELECT 1 on a new pool of url (host names resolved by
// nxdomainLookup's DNS server when lookup is set).
func execOn(url string, lookup func(context.Context, string) ([]string, error)) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		p, err := newPool(ctx, url, lookup)
		if err != nil {
			return err
		}
		defer p.Close()
		_, err = p.Exec(ctx, "SELECT 1")
		return err
	}
}

// newPool is pgxpool.New with the host names of url resolved by lookup
// (nil: the system's resolver).
func newPool(ctx context.Context, url string, lookup func(context.Context, string) ([]string, error)) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	if lookup != nil {
		cfg.ConnConfig.LookupFunc = lookup
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

// nxdomainLookup returns a host lookup through Go's resolver that asks a
// DNS server of its own on loopback, which answers every question with
// NXDOMAIN (name does not exist): a database host name that does not
// resolve, without asking any server off this machine.
func nxdomainLookup(t *testing.T) func(context.Context, string) ([]string, error) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			// The question echoed back: the header with QR set, RCODE 3
			// (NXDOMAIN), one question, no answers.
			resp := append([]byte(nil), buf[:n]...)
			resp[2] = 0x80 | (buf[2] & 0x79) // QR, opcode and RD as asked
			resp[3] = 0x83                   // RA, RCODE NXDOMAIN
			resp[6], resp[7], resp[8], resp[9], resp[10], resp[11] = 0, 0, 0, 0, 0, 0
			_, _ = pc.WriteTo(resp, from)
		}
	}()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
	return r.LookupHost
}

// TestDatabaseUnreachableBeforeAnyAnswerIsNotAFailure: a connection that
// could not be made without any server answering (the database's host
// name does not resolve; the connection is closed or reset during the
// start-up or the TLS handshake, as a proxy or load balancer in front of a
// database that is gone does) is ErrDatabaseUnavailable, like a refused
// dial: not a failure, outcome not_ready.
func TestDatabaseUnreachableBeforeAnyAnswerIsNotAFailure(t *testing.T) {
	t.Parallel()
	closing, _ := brokenProxy(t, "close", "")
	nx := nxdomainLookup(t)
	for name, url := range map[string]string{
		"unresolvable host":                              "postgres://postgres@db.invalid:5432/x?connect_timeout=5",
		"closed during the start-up":                     "postgres://postgres@" + closing + "/x?sslmode=disable&connect_timeout=5",
		"cut during the TLS handshake (sslmode=require)": "postgres://postgres@" + closing + "/x?sslmode=require&connect_timeout=5",
		"cut during the TLS handshake (sslmode=prefer)":  "postgres://postgres@" + closing + "/x?sslmode=prefer&connect_timeout=5",
	} {
		err := runThroughChain(t, execOn(url, nx))
		if !errors.Is(err, worker.ErrDatabaseUnavailable) || worker.IsFailure(err) || worker.Outcome(err) != worker.OutcomeNotReady {
			t.Errorf("%s: %v (failure %t, outcome %s); want ErrDatabaseUnavailable, not a failure, not_ready",
				name, err, worker.IsFailure(err), worker.Outcome(err))
		}
	}
}

// TestDatabaseAnsweringOrDroppingMidQueryStaysAFailure: a server that
// answers is reachable, so a misconfiguration surfaces as failures instead
// of a wait without end: sslmode=require against a server without TLS
// (it refuses TLS), a certificate that does not verify. A connection dropped after it was made (reset
// mid-query, no SQLSTATE) stays a failure too: the next attempt dials and
// meets the outage itself if there is one, and a statement that crashes
// its own backend (the server answers 57P03 right after) must not be
// retried for ever without counting.
func TestDatabaseAnsweringOrDroppingMidQueryStaysAFailure(t *testing.T) {
	t.Parallel()
	dbURL := testenv.Postgres(t)
	requireTLS := strings.Replace(dbURL, "sslmode=disable", "sslmode=require", 1)
	if requireTLS == dbURL {
		t.Fatalf("test database URL %q has no sslmode=disable to replace", dbURL)
	}
	if err := runThroughChain(t, execOn(requireTLS, nil)); err == nil || !worker.IsFailure(err) || errors.Is(err, worker.ErrDatabaseUnavailable) {
		t.Errorf("sslmode=require against a server without TLS: %v (failure %t); want a failure", err, worker.IsFailure(err))
	}
	untrusted := "postgres://postgres@" + testenv.FakePostgres(t, testenv.UntrustedTLS(t)) + "/x?sslmode=verify-full&connect_timeout=5"
	if err := runThroughChain(t, execOn(untrusted, nil)); err == nil || !worker.IsFailure(err) || errors.Is(err, worker.ErrDatabaseUnavailable) {
		t.Errorf("a certificate that does not verify: %v (failure %t); want a failure", err, worker.IsFailure(err))
	}

	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	target := net.JoinHostPort(pool.Config().ConnConfig.Host, fmt.Sprint(pool.Config().ConnConfig.Port))
	addr, cut := brokenProxy(t, "forward", target)
	proxied := strings.Replace(dbURL, target, addr, 1)
	err = runThroughChain(t, func(ctx context.Context) error {
		p, err := pgxpool.New(ctx, proxied)
		if err != nil {
			return err
		}
		defer p.Close()
		started := make(chan struct{})
		go func() {
			<-started
			time.Sleep(200 * time.Millisecond) // the statement is on the server
			cut()
		}()
		c, err := p.Acquire(ctx)
		if err != nil {
			return err
		}
		defer c.Release()
		close(started)
		var v int
		return c.QueryRow(ctx, "SELECT $1::int FROM pg_sleep(5)", 1).Scan(&v)
	})
	if err == nil || !worker.IsFailure(err) || errors.Is(err, worker.ErrDatabaseUnavailable) {
		t.Errorf("connection reset mid-query: %v (failure %t); want a failure", err, worker.IsFailure(err))
	}
}

// TestDatabaseBreakerHoldsWhileTheHostDoesNotResolve: a database whose
// host name does not resolve opens its breaker like a refused dial, and
// the breaker's probe (PingDatabase) keeps it held while the name still
// does not resolve: no task meets the lookup error as a failure.
func TestDatabaseBreakerHoldsWhileTheHostDoesNotResolve(t *testing.T) {
	t.Parallel()
	unresolvable, err := newPool(context.Background(), "postgres://postgres@db.invalid:5432/x?connect_timeout=5", nxdomainLookup(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unresolvable.Close)
	catalog := memstore.New()
	tn := addTenant(t, catalog, "no-such-host", tenantctx.StatusActive)
	c := newBreakerChain(t, worker.BreakerOptions{
		Probe: worker.PingDatabase(func(context.Context, string) (*pgxpool.Pool, error) { return unresolvable, nil }),
		// Every attempt after the first probes: the probe's own verdict
		// is what is checked.
		ProbeMin: time.Nanosecond, ProbeMax: time.Nanosecond,
		Logger: discardLogger(),
	}, catalog, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
			_, err := unresolvable.Exec(ctx, "SELECT 1")
			return err
		}),
	})
	b := c.breakers
	run := func() error { return c.render(tn) }
	if err := run(); !errors.Is(err, worker.ErrDatabaseUnavailable) || worker.IsFailure(err) {
		t.Fatalf("first attempt: %v (failure %t); want ErrDatabaseUnavailable", err, worker.IsFailure(err))
	}
	if !b.Down(tn.DatabaseName()) {
		t.Fatalf("database %s not held after its host did not resolve", tn.DatabaseName())
	}
	for i := range 3 {
		if err := run(); !errors.Is(err, worker.ErrDatabaseDown) || worker.IsFailure(err) {
			t.Fatalf("attempt %d after a probe that did not resolve the host: %v; want held (ErrDatabaseDown)", i+2, err)
		}
	}
}
