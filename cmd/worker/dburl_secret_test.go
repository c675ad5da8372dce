package main

import (
	"flag"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestDatabaseURLErrorHidesPassword: a DATABASE_URL or
// MIGRATIONS_DATABASE_URL that does not parse stops the worker with an
// error naming the variable, before it connects anywhere, and without
// any piece of the password: pgx's own error quotes the string with the
// password masked only as far as it understood it (an unterminated quote
// in a keyword/value string leaves the rest of it in the message).
func TestDatabaseURLErrorHidesPassword(t *testing.T) {
	const secret = "hunter2secret"
	redisURL, databaseURL := testenv.RedisURL(t), testenv.Postgres(t)
	for _, tc := range []struct{ name, database, migrations string }{
		{"DATABASE_URL", "host=127.0.0.1 port=1 user=app password='top " + secret, ""},
		{"MIGRATIONS_DATABASE_URL", databaseURL, "host=127.0.0.1 port=1 user=owner password='top " + secret},
		{"DATABASE_URL", "postgres://app:" + secret + "@127.0.0.1:port/x", ""},
	} {
		t.Setenv("DATABASE_URL", tc.database)
		t.Setenv("MIGRATIONS_DATABASE_URL", tc.migrations)
		t.Setenv("REDIS_URL", redisURL)
		t.Setenv("HTTP_ADDR", "127.0.0.1:0")
		oldArgs, oldFlags := os.Args, flag.CommandLine
		os.Args = []string{"worker"}
		flag.CommandLine = flag.NewFlagSet("worker", flag.ContinueOnError)
		var stderr testenv.LogBuffer
		err := run(io.Discard, &stderr)
		os.Args, flag.CommandLine = oldArgs, oldFlags
		if err == nil {
			t.Fatalf("%s=<bad>: the worker started", tc.name)
		}
		out := err.Error() + "\n" + stderr.String()
		if strings.Contains(out, secret) {
			t.Errorf("%s=<bad>: the password is in the error or the log:\n%s", tc.name, out)
		}
		if !strings.Contains(out, tc.name) {
			t.Errorf("%s=<bad>: the error does not name the variable:\n%s", tc.name, out)
		}
	}
}
