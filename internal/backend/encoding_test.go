package backend_test

import (
	"context"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/backend"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestOpenRefusesADatabaseThatIsNotUTF8: a DATABASE_URL database created
// with another server encoding than UTF8 (initdb -E, CREATE DATABASE ...
// ENCODING) stops the start with an error naming the encoding and the
// fix. Before, both binaries started: on LATIN1 the first tenant named
// outside Latin-1 failed its provisioning with 22P05 (the API's 500), and
// on SQL_ASCII, which stores whatever bytes a client sends unchecked, a
// name the Invoicer app wrote in Latin-1 reached PDFs and reminders as
// text that is not UTF-8, printed as U+FFFD.
func TestOpenRefusesADatabaseThatIsNotUTF8(t *testing.T) {
	t.Parallel()
	for _, enc := range []string{"SQL_ASCII", "LATIN1"} {
		e := env(t)
		e["DATABASE_URL"] = testenv.PostgresEncoded(t, enc)
		cfg, err := config.FromEnv(getenv(e))
		if err != nil {
			t.Fatal(err)
		}
		b, err := backend.Open(context.Background(), cfg, quietLogger(), backend.Options{})
		if err == nil {
			_ = b.Close()
			t.Errorf("Open on a %s database succeeded", enc)
			continue
		}
		for _, want := range []string{"DATABASE_URL", enc, "UTF8"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		t.Logf("error: %v", err)
	}
}
