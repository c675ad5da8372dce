// Command worker runs the tenant-aware task worker: the asynq server with
// the task handlers, the sweep scheduler loop, and a health and metrics
// HTTP server. Configuration comes from the environment (see package
// internal/config); flags override some of it.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/devstack"
	"github.com/invoicing/tenantworker/internal/stopsignal"
	"github.com/invoicing/tenantworker/internal/workerapp"
)

func main() {
	// A write to a pipe whose reader has gone fails instead of ending the
	// process, as in the enqueue CLI: the log of "worker 2>&1 | tee
	// worker.log" (or "worker -dev") goes to a tee that the same Ctrl-C or
	// hang-up ends first, or to a log shipper that died, and the next line
	// would otherwise kill the worker (Go ends a process on SIGPIPE from a
	// write to stdout or stderr), cutting its graceful stop short (running
	// tasks neither finished nor handed back, the dev stack's throwaway
	// database directory left behind). The worker goes on without its
	// log, and stops on SIGTERM as usual: only the lines are lost
	// (docs/operations.md, "Logs": the choice to go on without them).
	signal.Ignore(syscall.SIGPIPE)
	if devstack.Requested(os.Args[1:]) {
		os.Exit(devstack.Main(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
	}
	// Parse errors come back from run (ContinueOnError), so that -h is
	// exit 0 with the usage on stdout and a mistake exit 2, as in the
	// enqueue CLI, instead of package flag's own exits.
	flag.CommandLine.Init("worker", flag.ContinueOnError)
	err := run(os.Stdout, os.Stderr)
	var usageErr usageError
	switch {
	case err == nil:
	case errors.Is(err, errHelp):
	case errors.As(err, &usageErr):
		if !usageErr.shown {
			fmt.Fprintf(os.Stderr, "worker: %v\n", oneLine(usageErr.err))
		}
		os.Exit(2)
	default:
		if !errors.Is(err, errLogged) {
			fmt.Fprintf(os.Stderr, "worker: %v\n", oneLine(err))
		}
		os.Exit(1)
	}
}

// errLogged is returned by run for a failure it has logged already, in
// LOG_FORMAT, so that main does not print it again as plain text.
var errLogged = errors.New("worker failed (logged)")

// errHelp is returned by run after -h or --help printed the usage on
// stdout: the worker exits 0 without starting.
var errHelp = errors.New("worker: help requested")

// usageError is a command-line mistake (a flag that does not parse or
// whose value the worker refuses, a stray argument): main exits 2 after
// printing it on stderr, unless parsing printed it already with the usage
// (shown).
type usageError struct {
	err   error
	shown bool
}

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

const usageHeader = `usage: worker [-http-addr ADDR] [-concurrency N] [-cpuprofile FILE]
       worker -dev [flags]   (the embedded development stack: worker -dev -h)

Runs the task worker, its sweep scheduler and its health and metrics
server. Configuration comes from the environment (README, "Configuration");
these flags override it.

flags:
`

// parseFlags parses args with fs (ContinueOnError): -h and --help print
// the usage on stdout (errHelp); a flag that does not parse prints its
// error and the usage on stderr, and a stray argument is refused, both as
// usageError, so that stdout stays empty on a mistake.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	var out bytes.Buffer
	fs.SetOutput(&out)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHeader)
		fs.PrintDefaults()
	}
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		_, _ = stdout.Write(out.Bytes())
		return errHelp
	case err != nil:
		_, _ = stderr.Write(out.Bytes())
		return usageError{err: err, shown: true}
	}
	// The worker takes flags only: a stray argument ends flag parsing, so
	// the flags after it ("worker serve -concurrency 20") would be ignored
	// without a word.
	if fs.NArg() > 0 {
		return usageError{err: fmt.Errorf("unexpected arguments %q: the worker takes flags only (worker -h)", fs.Args())}
	}
	return nil
}

// run runs the worker, logging to stderr once the configuration is read;
// -h prints the usage on stdout.
func run(stdout, stderr io.Writer) error {
	httpAddr := flag.String("http-addr", "", "health and metrics listen address (overrides HTTP_ADDR; default "+config.DefaultWorkerHTTPAddr+")")
	var concurrency config.DecimalInt
	flag.Var(&concurrency, "concurrency", fmt.Sprintf("`N` tasks processed at once, at most %d (overrides WORKER_CONCURRENCY)", config.MaxDBConns))
	// -dev (PostgreSQL, Redis, enqueue service and demo tenants in one
	// process) is handled in main by package devstack; listed for -h.
	flag.Bool("dev", false, `run the embedded development stack (see "worker -dev -h")`)
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the worker to this file until it exits (go tool pprof; used by the load command)")
	if err := parseFlags(flag.CommandLine, os.Args[1:], stdout, stderr); err != nil {
		return err
	}
	// A value the flag reads but the worker refuses is a command-line
	// mistake (exit 2), as a value that does not parse is; checked before
	// the environment is read. "-concurrency 0" is refused as
	// WORKER_CONCURRENCY=0 is, not taken for the flag not given.
	concurrencySet := false
	flag.Visit(func(f *flag.Flag) { concurrencySet = concurrencySet || f.Name == "concurrency" })
	if concurrency < 0 || (concurrencySet && concurrency == 0) {
		return usageError{err: fmt.Errorf("-concurrency: must be a positive integer, got %d", concurrency)}
	}
	if concurrency > config.MaxDBConns {
		// Resolve would name WORKER_CONCURRENCY, which may not be set.
		return usageError{err: fmt.Errorf("-concurrency: at most %d, got %d", config.MaxDBConns, concurrency)}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	// SIGTERM or SIGINT starts the shutdown, a second one ends the process
	// at once; a SIGINT the worker was started ignoring (a script's
	// background job) stays ignored.
	ctx, stop := stopsignal.Context(context.Background(), os.Interrupt)
	defer stop()

	// Flags override the environment before defaults and validation, so
	// DB_MAX_CONNS's default follows -concurrency.
	cfg, err := config.Parse(os.Getenv)
	if err != nil {
		return err
	}
	if *httpAddr != "" {
		cfg.HTTPAddr = *httpAddr
	}
	if concurrency != 0 {
		cfg.WorkerConcurrency = int(concurrency)
	}
	if cfg, err = cfg.Resolve(); err != nil {
		return err
	}
	// A line per task: lines written under load share writes; closeLog
	// writes the rest before run returns.
	logger, closeLog := config.NewProcessLogger(cfg, stderr)
	defer closeLog()
	stopAfter(ctx, stopLimit(cfg), logger, closeLog)
	// From here on the reason of a failure is a log line in LOG_FORMAT (a
	// JSON object with LOG_FORMAT=json), not plain text among the records.
	if err := workerapp.Run(ctx, cfg, logger); err != nil {
		logger.Error("worker failed", slog.String("error", err.Error()))
		return errLogged
	}
	return nil
}

// stopGrace is how long past SHUTDOWN_TIMEOUT a worker's stop may take
// before stopAfter ends the process: the steps after the running tasks'
// are bounded (the last completion reports 5 s, leaving the dispatcher
// 2 s, the health server 5 s), and closing the pools is quick once no
// task holds a connection.
const stopGrace = 15 * time.Second

// stopLimit is how long a healthy stop of a worker configured by cfg may
// take before stopAfter ends it: SHUTDOWN_TIMEOUT for the running tasks,
// stopGrace for the rest, and, without fair dispatch, the idle sleep of
// asynq's processor, which its shutdown waits out (half of
// TASK_CHECK_INTERVAL to one and a half times it; up to 90 s with 1m).
func stopLimit(cfg config.Config) time.Duration {
	d := cfg.ShutdownTimeout + stopGrace
	if !cfg.FairDispatch {
		d += cfg.TaskCheckInterval * 3 / 2
	}
	return d
}

// stopAfter ends the process with status 1, once ctx is done (the first
// SIGTERM or SIGINT), should the stop take longer than d (stopLimit): with Redis or
// PostgreSQL frozen (a paused VM, a dead disk: connections open, nothing
// answered) asynq's last calls and each step of its shutdown wait out
// their network timeouts, well past SHUTDOWN_TIMEOUT. Nothing is lost by
// not waiting: the tasks still leased go back to their queues when their
// leases lapse, as after kill -9. It logs why, and writes the log out.
func stopAfter(ctx context.Context, d time.Duration, logger *slog.Logger, closeLog func() error) {
	context.AfterFunc(ctx, func() {
		time.AfterFunc(d, func() {
			logger.Error("worker stop took too long: exiting without waiting for the rest (Redis or PostgreSQL not answering?); tasks still leased go back to their queues when their leases lapse",
				slog.Duration("waited", d))
			_ = closeLog()
			os.Exit(1)
		})
	})
}

// oneLine joins a multi-line error (errors.Join) into one line.
func oneLine(err error) string {
	s := err.Error()
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, ';', ' ')
			continue
		}
		out = append(out, s[i])
	}
	return string(out)
}
