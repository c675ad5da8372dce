package placement_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// withSSLMode returns dsn with its sslmode set to mode.
func withSSLMode(t *testing.T, dsn, mode string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("sslmode", mode)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestCheckDatabaseRefusesTheURLsTLSSetting: a server that answers a
// connection but refuses the URL's TLS setting is a misconfiguration,
// ErrRefusedTLS (an ErrRefused, so start, `db add`, `db list` and a
// move's target check all treat it as a refused login), naming the TLS
// problem and never the password: sslmode=require against a server
// without TLS, and sslmode=verify-full against a certificate no client
// trusts. What no server answered stays ErrUnreachable (a warning at
// start): sslmode=require against a closed port, a connection closed
// during the TLS handshake, a connect cut by its ctx while the server
// says nothing; and sslmode=prefer against a server without TLS passes.
func TestCheckDatabaseRefusesTheURLsTLSSetting(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	owner := testenv.PostgresAs(t, true)
	untrusted := testenv.FakePostgres(t, testenv.UntrustedTLS(t))
	closing := testenv.FakePostgres(t, func(c net.Conn) {
		_, _ = c.Write([]byte{'S'})
		// closed by FakePostgres: EOF during the TLS handshake
	})
	silent := testenv.FakePostgres(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := l.Addr().String()
	_ = l.Close()
	const pw = "s3cret-pw"

	for _, c := range []struct {
		name, dsn string
		want      string // the pgconn text the error carries
	}{
		{"require against a server without TLS", withSSLMode(t, owner, "require"), "server refused TLS connection"},
		{"verify-full against an untrusted certificate", "postgres://app:" + pw + "@" + untrusted + "/x?sslmode=verify-full&connect_timeout=5", "certificate"},
	} {
		err := placement.CheckDatabase(ctx, c.dsn, nil)
		if !errors.Is(err, placement.ErrRefusedTLS) || !errors.Is(err, placement.ErrRefused) || errors.Is(err, placement.ErrUnreachable) {
			t.Errorf("%s: %v; want ErrRefusedTLS, an ErrRefused, not ErrUnreachable", c.name, err)
			continue
		}
		if !strings.Contains(err.Error(), "TLS") || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), pw) {
			t.Errorf("%s: %q lacks TLS or %q, or quotes the password", c.name, err, c.want)
		}
		t.Logf("%s: %v", c.name, err)
	}

	for _, c := range []struct{ name, dsn string }{
		{"require against a closed port", "postgres://app:" + pw + "@" + closedPort + "/x?sslmode=require&connect_timeout=5"},
		{"closed during the TLS handshake", "postgres://app:" + pw + "@" + closing + "/x?sslmode=require&connect_timeout=5"},
	} {
		err := placement.CheckDatabase(ctx, c.dsn, nil)
		if !errors.Is(err, placement.ErrUnreachable) || errors.Is(err, placement.ErrRefused) {
			t.Errorf("%s: %v; want ErrUnreachable, not ErrRefused", c.name, err)
		}
	}

	cctx, cancel := context.WithCancel(ctx)
	stop := time.AfterFunc(100*time.Millisecond, cancel)
	defer stop.Stop()
	err = placement.CheckDatabase(cctx, "postgres://app:"+pw+"@"+silent+"/x?sslmode=require&connect_timeout=5", nil)
	if !errors.Is(err, placement.ErrUnreachable) || errors.Is(err, placement.ErrRefused) {
		t.Errorf("connect cut by its ctx: %v; want ErrUnreachable, not ErrRefused", err)
	}

	if err := placement.CheckDatabase(ctx, withSSLMode(t, owner, "prefer"), nil); err != nil {
		t.Errorf("sslmode=prefer against a server without TLS: %v; want it to pass", err)
	}
}
