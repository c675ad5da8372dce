package devstack

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
)

func TestRequested(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"-dev"}, true},
		{[]string{"--dev"}, true},
		{[]string{"-http-addr", ":0", "-dev"}, true},
		{[]string{"-dev=true"}, true},
		{[]string{"-dev=false"}, false},
		{[]string{"-devx"}, false},
		{[]string{"dev"}, false},
		{[]string{"--", "-dev"}, false},
		{[]string{"-concurrency", "4"}, false},
		// As package flag reads a boolean (strconv.ParseBool), the last
		// -dev winning: otherwise the production worker starts, taking
		// -dev=TRUE for its own ignored -dev.
		{[]string{"-dev=TRUE"}, true},
		{[]string{"-concurrency", "4", "--dev=t"}, true},
		{[]string{"-dev=0"}, false},
		{[]string{"-dev", "-dev=false"}, false},
		{[]string{"-dev=false", "-dev"}, true},
	}
	for _, tt := range tests {
		if got := Requested(tt.args); got != tt.want {
			t.Errorf("Requested(%q) = %v, want %v", tt.args, got, tt.want)
		}
	}
}

func TestMainRejectsBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantCode int
		wantErr  string
	}{
		{name: "unknown flag", args: []string{"-dev", "-nope"}, wantCode: 2, wantErr: "flag provided but not defined: -nope"},
		{name: "stray argument", args: []string{"-dev", "serve"}, wantCode: 2, wantErr: `unexpected arguments ["serve"]`},
		{name: "bad log format", args: []string{"-dev"}, env: map[string]string{"LOG_FORMAT": "xml"}, wantCode: 2, wantErr: "LOG_FORMAT: must be text or json"},
		{name: "bad log level", args: []string{"-dev"}, env: map[string]string{"LOG_LEVEL": "loud"}, wantCode: 2, wantErr: "LOG_LEVEL: must be debug"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := Main(tt.args, &stdout, &stderr, func(k string) string { return tt.env[k] })
			if code != tt.wantCode || !strings.Contains(stderr.String(), tt.wantErr) {
				t.Fatalf("Main(%q) = %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), tt.wantCode, tt.wantErr)
			}
			if stdout.Len() != 0 {
				t.Fatalf("stdout: %q, want nothing", stdout.String())
			}
		})
	}
}

// TestMainHelpGoesToStdout: "worker -dev -h" prints the usage on stdout
// and exits 0, as every enqueue command's --help does, so that
// `worker -dev -h | less` shows it; stderr stays empty.
func TestMainHelpGoesToStdout(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-dev", "-h"}, {"-dev", "--help"}, {"-h", "-dev"}} {
		var stdout, stderr bytes.Buffer
		code := Main(args, &stdout, &stderr, func(string) string { return "" })
		if code != 0 || !strings.Contains(stdout.String(), "usage: worker -dev") || !strings.Contains(stdout.String(), "-data-dir") || stderr.Len() != 0 {
			t.Errorf("Main(%q) = %d, stdout %q, stderr %q; want 0, the usage on stdout, nothing on stderr", args, code, stdout.String(), stderr.String())
		}
	}
}

func TestMainBusyPortIsOneLine(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dataDir := t.TempDir()

	for _, flagName := range []string{"http-addr", "worker-addr"} {
		var stdout, stderr bytes.Buffer
		args := []string{"-dev", "-data-dir", dataDir, "-http-addr", "127.0.0.1:0", "-worker-addr", "127.0.0.1:0"}
		args = append(args, "-"+flagName, ln.Addr().String())
		code := Main(args, &stdout, &stderr, func(string) string { return "" })
		want := "worker -dev: listen on " + ln.Addr().String() + ": address already in use: stop the process holding the port, or pass another address with -" + flagName + "\n"
		if code != 1 || stderr.String() != want {
			t.Fatalf("busy -%s: Main = %d, stderr %q; want 1 and %q", flagName, code, stderr.String(), want)
		}
	}
}

// TestNewLoggerTrimsLikeTheBinaries: LOG_LEVEL and LOG_FORMAT with
// surrounding spaces are read as the binaries read them (internal/config
// trims every variable), not refused.
func TestNewLoggerTrimsLikeTheBinaries(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"LOG_LEVEL": " debug ", "LOG_FORMAT": "json\n"}
	logger, err := newLogger(io.Discard, func(k string) string { return vars[k] })
	if err != nil {
		t.Fatalf("newLogger: %v", err)
	}
	if !logger.Enabled(context.Background(), slog.LevelDebug) {
		t.Fatal("LOG_LEVEL \" debug \": debug not enabled")
	}
}

// TestEnvOptionsTrimLikeTheBinaries: DATABASE_URL and ADMIN_TOKEN with
// surrounding spaces (a newline from $(cat file)) are read as the binaries
// read them: a token with a trailing newline would otherwise never match
// what an operator types.
func TestEnvOptionsTrimLikeTheBinaries(t *testing.T) {
	t.Parallel()
	vars := map[string]string{
		"DATABASE_URL": " postgres://app@127.0.0.1:5432/app\n",
		"ADMIN_TOKEN":  "s3cret\n",
	}
	opts := envOptions(func(k string) string { return vars[k] })
	if opts.DatabaseURL != "postgres://app@127.0.0.1:5432/app" || opts.AdminToken != "s3cret" {
		t.Fatalf("envOptions: DatabaseURL %q, AdminToken %q; want both without surrounding spaces", opts.DatabaseURL, opts.AdminToken)
	}
	if opts := envOptions(func(string) string { return "" }); opts.DatabaseURL != "" || opts.AdminToken != "" {
		t.Fatalf("envOptions with nothing set: %+v", opts)
	}
}
