package schema

import (
	"context"
	"os"
	"os/user"
	"strconv"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/pgserver"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestPoolsOverTLS: the pools (NewPool, and NewLanes, which the other
// tenant databases' pools are made of) honour sslmode=verify-full with an
// operator's CA (sslrootcert) and refuse a server certificate that CA did
// not sign.
func TestPoolsOverTLS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, err := pgserver.Start(ctx, pgserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	files := testenv.WriteTLSFiles(t, srv.Dir())
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, f := range []string{files.CA, files.Cert, files.Key} {
			if err := os.Chown(f, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	admin, err := NewPool(ctx, srv.URL(), PoolOptions{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"ALTER SYSTEM SET ssl_cert_file = '" + files.Cert + "'",
		"ALTER SYSTEM SET ssl_key_file = '" + files.Key + "'",
		"ALTER SYSTEM SET ssl = on",
		"SELECT pg_reload_conf()",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	admin.Close()
	base := "postgres://postgres@localhost:" + strconv.Itoa(srv.Port()) + "/postgres?sslmode=verify-full&sslrootcert="

	pool, err := NewPool(ctx, base+files.CA, PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var ssl bool
	if err := pool.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Fatalf("pool over verify-full: ssl %v, %v", ssl, err)
	}
	lanes, err := NewLanes(ctx, base+files.CA, 2, PoolOptions{MaxConns: 2, MinConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer lanes.Close()
	for _, p := range lanes.Pools() {
		if err := p.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
			t.Fatalf("lane over verify-full: ssl %v, %v", ssl, err)
		}
	}

	other := testenv.WriteTLSFiles(t, t.TempDir())
	bad, err := NewPool(ctx, base+other.CA, PoolOptions{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.Ping(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("ping with a CA that did not sign the server's certificate: %v, want a certificate error", err)
	}
}
