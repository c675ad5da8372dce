package placement_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
)

// TestChooseDoesNotLogTheURLOfADatabaseThatDoesNotParseHere: a database
// registered by `enqueue db add` from another machine, whose URL names a
// file this process cannot read (sslrootcert), does not parse here;
// Choose skips it with a warning that names the file, not the URL: pgx's
// error quotes the connection string with the password masked as best
// it can, and in keyword/value form "password = s3cret" (spaces around
// the '=', as libpq allows) or a quoted password with an escaped quote
// keeps it whole or in part.
func TestChooseDoesNotLogTheURLOfADatabaseThatDoesNotParseHere(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	main := catalogPool(t)
	catalog := storage.NewPostgres(main)
	const ca = "/nonexistent/tenantworker-test/eu2-ca.pem"
	for name, dsn := range map[string]string{
		"a1": "host=127.0.0.1 port=1 user=app password = s3cretPW sslmode=verify-full sslrootcert=" + ca,
		"a2": `host=127.0.0.1 port=1 user=app password='it\'s s3cretPW' sslmode=verify-full sslrootcert=` + ca,
	} {
		if _, err := catalog.AddDatabase(ctx, name, dsn); err != nil {
			t.Fatal(err)
		}
	}
	log := &testenv.LogBuffer{}
	r := placement.New(placement.Options{MainPool: main, Catalog: catalog, MaxConns: 2,
		Logger: slog.New(slog.NewTextHandler(log, nil)), RefreshInterval: -1})
	t.Cleanup(func() { _ = r.Close() })
	if name, err := r.Choose(ctx, ""); err != nil || name != "main" {
		t.Fatalf("Choose() = %q, %v; want main (a1 and a2 do not parse here)", name, err)
	}
	out := log.String()
	if n := strings.Count(out, "does not answer, skipped"); n != 2 {
		t.Errorf("%d lines saying a candidate was skipped, want one each for a1 and a2:\n%s", n, out)
	}
	if strings.Contains(out, "s3cretPW") {
		t.Errorf("the log quotes a database's password:\n%s", out)
	}
	if !strings.Contains(out, ca) {
		t.Errorf("the log does not name the file that cannot be read (%s):\n%s", ca, out)
	}
}
