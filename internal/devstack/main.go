package devstack

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/invoicing/tenantworker/internal/gorun"
	"github.com/invoicing/tenantworker/internal/logctx"
	"github.com/invoicing/tenantworker/internal/stopsignal"
)

// Requested reports whether the command line asks for the dev stack
// (-dev or --dev, or =VALUE with a value package flag reads as true:
// true, t, 1, TRUE...; the last -dev wins, as in package flag), so that
// cmd/worker can hand over to Main before parsing its own flags. A value
// that is not a boolean is not a request: the worker's own parsing
// refuses it (exit 2).
func Requested(args []string) bool {
	requested := false
	for _, a := range args {
		if a == "--" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "dev" {
			continue
		}
		if !hasValue {
			requested = true
			continue
		}
		v, err := strconv.ParseBool(value)
		requested = err == nil && v
	}
	return requested
}

const usage = `usage: worker -dev [-http-addr localhost:8080] [-worker-addr 127.0.0.1:0] [-data-dir ./devdata]

Runs the whole system in one process for development: an in-process Redis,
a throwaway PostgreSQL (or the database at DATABASE_URL), the worker with a
sweep every minute, the HTTP enqueue service with the dashboard, and two
demo tenants, acme and globex. Ctrl-C stops it and removes the throwaway
database.

Environment: DATABASE_URL (use this database instead of a throwaway one;
it is kept), ADMIN_TOKEN (default: random per run), LOG_LEVEL (debug,
info, warn, error; default info), LOG_FORMAT (text or json).

flags:
`

// Main runs `worker -dev`: it parses args (which must include -dev),
// runs the stack until SIGINT or SIGTERM, or until the go command that
// started it (`go run`, which does not pass signals on) ends, and returns
// the exit code: 0
// after a clean stop, 1 when the stack could not start or failed (with one
// line on stderr), 2 for bad flags (on stderr, with the usage). Logs go
// to stderr, the banner, or the usage asked for with -h, to stdout. A second Ctrl-C while stopping exits at once.
func Main(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("worker -dev", flag.ContinueOnError)
	// Parsing writes to a buffer: -h's usage goes to stdout, as the
	// enqueue CLI's does, and a mistake with the usage to stderr.
	var flagOut bytes.Buffer
	fs.SetOutput(&flagOut)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.Bool("dev", true, "run the embedded development stack")
	httpAddr := fs.String("http-addr", DefaultHTTPAddr, "listen address of the HTTP enqueue service")
	workerAddr := fs.String("worker-addr", DefaultWorkerAddr, "listen address of the worker's health and metrics")
	dataDir := fs.String("data-dir", DefaultDataDir, "directory for PDFs, reminder e-mails and the throwaway database")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, _ = stdout.Write(flagOut.Bytes())
			return 0
		}
		_, _ = stderr.Write(flagOut.Bytes())
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "worker -dev: unexpected arguments %q\n", fs.Args())
		return 2
	}
	logger, err := newLogger(stderr, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "worker -dev: %v\n", err)
		return 2
	}

	// A second signal gets the default behaviour: exit at once.
	ctx, stop := stopsignal.Context(context.Background(), os.Interrupt)
	// Under `go run` (the README's first command), also once the go
	// command ends: it passes no signal on (package gorun).
	ctx, stopWatch := gorun.Context(ctx, func(goPID int) {
		logger.Info("go run ended: stopping the dev stack", "go_run_pid", goPID)
	})
	opts := envOptions(getenv)
	opts.HTTPAddr, opts.WorkerAddr, opts.DataDir = *httpAddr, *workerAddr, *dataDir
	opts.Stdout, opts.Logger = stdout, logger
	err = Run(ctx, opts)
	stopWatch()
	stop()
	if err != nil {
		fmt.Fprintf(stderr, "worker -dev: %v\n", err)
		return 1
	}
	return 0
}

// envOptions returns the Options the environment sets (DATABASE_URL,
// ADMIN_TOKEN), read as the binaries read them: surrounding spaces, such
// as a newline left by $(cat file), are ignored.
func envOptions(getenv func(string) string) Options {
	return Options{
		DatabaseURL: strings.TrimSpace(getenv("DATABASE_URL")),
		AdminToken:  strings.TrimSpace(getenv("ADMIN_TOKEN")),
	}
}

// newLogger returns a text (or LOG_FORMAT=json) logger at LOG_LEVEL,
// reading both as the binaries do (surrounding spaces ignored); as theirs,
// its lines on a task's path carry the task's attributes (logctx).
func newLogger(w io.Writer, getenv func(string) string) (*slog.Logger, error) {
	var level slog.Level
	if v := strings.TrimSpace(getenv("LOG_LEVEL")); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			return nil, fmt.Errorf("LOG_LEVEL: must be debug, info, warn or error, got %.40q", v)
		}
	}
	opts := &slog.HandlerOptions{Level: level}
	format := strings.TrimSpace(getenv("LOG_FORMAT"))
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(logctx.Handler(slog.NewTextHandler(w, opts))), nil
	case "json":
		return slog.New(logctx.Handler(slog.NewJSONHandler(w, opts))), nil
	default:
		return nil, fmt.Errorf("LOG_FORMAT: must be text or json, got %.40q", format)
	}
}
