package enqueueapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/backend"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// Exit codes of Main.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
	// ExitInterrupted: a signal (SIGTERM, Ctrl-C, a hang-up) stopped
	// "migrate --all" before it was done; what it enqueued goes on in the
	// workers, and running it again continues (130, as a shell reports a
	// command Ctrl-C ended).
	ExitInterrupted = 130
)

// IO is where Main reads its environment and writes.
type IO struct {
	Stdout, Stderr io.Writer
	// Getenv reads the environment (os.Getenv).
	Getenv func(string) string
	// Terminal reports whether Stdout is a terminal (progress on one
	// updating line instead of plain lines).
	Terminal bool
	// Options are handed to Run and to the commands (tests, dev mode).
	Options Options
}

const usage = `usage: enqueue <command> [flags]

commands:
  serve      run the HTTP enqueue service (the default without a command):
             serve [--addr ADDR]
  migrate    enqueue tenant schema migrations:
             migrate --all [--wait] [--timeout 10m] [--poll 500ms]
  pdf        enqueue an invoice PDF render: pdf --tenant SLUG --invoice ID
  db         tenant databases: db list | db add NAME URL | db remove NAME
  tenant     tenants: tenant add SLUG [--name N] [--plan P] [--database DB]
             [--time-zone ZONE]
             | tenant move SLUG --to DB [--grace 3s] [--drain-timeout 5m]
             | tenant time-zone SLUG ZONE (an IANA name, e.g. Europe/Berlin)
             | tenant reset-policies (after restoring the catalog from a
             backup: docs/operations.md)
  queues     fair dispatch's backlogs per queue, the largest by tenant, and
             the live workers: queues [--top N] [--json]
  dispatch-mode
             the dispatch mode the Redis records (FAIR_DISPATCH of the
             processes sharing it), or switch it with every process
             stopped: dispatch-mode [fair|plain]
  documents  remove the PDFs of invoices deleted since they were rendered
             (no invoice_documents row records them) from DOCUMENTS_DIR:
             documents prune [--tenant SLUG]; one JSON line per tenant

Configuration comes from the environment: DATABASE_URL,
MIGRATIONS_DATABASE_URL, REDIS_URL, DOMAIN_SUFFIX, ADMIN_TOKEN (at least 32
bytes), HTTP_ADDR (default :8080), TENANT_DATABASES,
TENANT_DB_MAX_CONNS, ALLOW_TENANT_HEADER, DASHBOARD_WRITABLE,
AUTH_FAILURES_PER_MINUTE, CLIENT_IP_HEADER, DOCUMENTS_DIR, DB_MAX_CONNS
(default: WORKER_CONCURRENCY plus headroom), DB_POOL_LANES, DB_KEEP_CONNS,
TENANT_CACHE_TTL, REQUEST_TIMEOUT, ADMIN_REQUEST_TIMEOUT, API_TENANT_DB_CONNS,
SHUTDOWN_TIMEOUT, REDIS_AUTOPIPELINE, FAIR_DISPATCH, PLAN_LIMITS,
FAIR_MAX_WAITING_TOTAL, QUEUE_SHARDS, QUEUE_SHARDS_SERVED, LOG_FORMAT,
LOG_LEVEL; MAIL_FROM,
OVERDUE_SWEEP_CRON, DOCUMENTS_SWEEP_CRON and REMINDER_SEND_HOUR are checked
at start as the worker checks them (the
README's Configuration table has each one's default and meaning).
Run "enqueue <command> --help" for a command's flags.
`

// Main runs the enqueue command line and returns its exit code.
func Main(ctx context.Context, args []string, sio IO) int {
	cmd, rest := "serve", args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, rest = args[0], args[1:]
	}
	if len(args) > 0 && isHelpFlag(args[0]) {
		// "enqueue --help" asks about the command, not about serve alone.
		cmd = "help"
	}
	var run func(context.Context, []string, IO) error
	switch cmd {
	case "serve":
		run = serveCmd
	case "migrate":
		run = migrateCmd
	case "pdf":
		run = pdfCmd
	case "db":
		run = dbCmd
	case "tenant":
		run = tenantCmd
	case "queues":
		run = queuesCmd
	case "dispatch-mode":
		run = dispatchModeCmd
	case "documents":
		run = documentsCmd
	case "help":
		fmt.Fprint(sio.Stdout, usage)
		return ExitOK
	default:
		fmt.Fprintf(sio.Stderr, "enqueue: unknown command %q\n\n%s", cmd, usage)
		return ExitUsage
	}
	err := run(ctx, rest, sio)
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(sio.Stderr, "enqueue %s: %v\n", cmd, err)
		return ExitUsage
	case errors.Is(err, errLogged):
		return ExitFailure
	case errors.Is(err, errInterrupted):
		fmt.Fprintf(sio.Stderr, "enqueue %s: %v\n", cmd, err)
		return ExitInterrupted
	}
	fmt.Fprintf(sio.Stderr, "enqueue %s: %v\n", cmd, err)
	return ExitFailure
}

// isHelpFlag reports whether arg asks for help as the flag package
// understands it (-h, -help, --h, --help).
func isHelpFlag(arg string) bool {
	switch arg {
	case "-h", "-help", "--h", "--help":
		return true
	}
	return false
}

// errUsage marks command-line mistakes (exit code 2).
var errUsage = errors.New("usage")

// errInterrupted marks a command a signal stopped before it was done,
// saying what it left (exit code ExitInterrupted).
var errInterrupted = errors.New("interrupted")

// errLogged is the failure of a command that logged its reason already,
// in LOG_FORMAT (serve), so that Main does not print it again as plain
// text among the log records (exit code 1).
var errLogged = errors.New("failed (logged)")

// flagOutput holds what the flag package prints while it parses, until
// parseFlags knows where it goes: the usage asked for with --help to
// stdout, a mistake's message and the usage to stderr (stdout carries the
// commands' data: JSON, tables).
type flagOutput struct {
	bytes.Buffer
	stdout, stderr io.Writer
}

// flagSet returns a FlagSet for cmd writing its help to stdout and its
// mistakes to stderr (parseFlags).
func flagSet(cmd, synopsis string, sio IO) *flag.FlagSet {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(&flagOutput{stdout: sio.Stdout, stderr: sio.Stderr})
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: enqueue %s\n\nflags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, mapping flag errors to errUsage (the problem and
// the usage are printed on stderr; the usage asked for with --help on
// stdout).
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if o, ok := fs.Output().(*flagOutput); ok && o.Len() > 0 {
		w := o.stderr
		if err == nil || errors.Is(err, flag.ErrHelp) {
			w = o.stdout
		}
		_, _ = o.WriteTo(w)
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return nil
}

// parse parses args as parseFlags does, and refuses arguments that are
// not flags.
func parse(fs *flag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	return nil
}

// loadConfig reads the configuration and builds the logger.
func loadConfig(sio IO) (config.Config, *slog.Logger, error) {
	cfg, err := config.FromEnv(sio.Getenv)
	if err != nil {
		return config.Config{}, nil, fmt.Errorf("configuration: %w", err)
	}
	return cfg, config.NewLogger(cfg, sio.Stderr), nil
}

// cliBackend is what a one-shot CLI command works with: the configuration,
// a logger and an open backend.
type cliBackend struct {
	*backend.Backend
	cfg    config.Config
	logger *slog.Logger
	close  func() error
}

// openCLI loads the configuration and opens the backend for a one-shot
// command; the caller defers close.
func openCLI(ctx context.Context, sio IO) (cliBackend, error) {
	cfg, logger, err := loadConfig(sio)
	if err != nil {
		return cliBackend{}, err
	}
	b, closeBackend, err := openBackend(ctx, cfg, logger, sio.Options, true)
	if err != nil {
		return cliBackend{}, err
	}
	return cliBackend{Backend: b, cfg: cfg, logger: logger, close: closeBackend}, nil
}

// serveCmd is "enqueue serve".
func serveCmd(ctx context.Context, args []string, sio IO) error {
	fs := flagSet("serve", "serve [--addr ADDR]", sio)
	addr := fs.String("addr", "", "listen address (overrides HTTP_ADDR, default :8080)")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := config.Parse(sio.Getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if *addr != "" {
		cfg.HTTPAddr = *addr
	}
	if cfg, err = cfg.Resolve(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	// The service logs a line per request: lines written under load share
	// writes (config.NewProcessLogger); closeLog writes the rest.
	logger, closeLog := config.NewProcessLogger(cfg, sio.Stderr)
	defer closeLog()
	if err := RunWith(ctx, cfg, logger, sio.Options); err != nil {
		logger.Error("enqueue service failed", slog.String("error", err.Error()))
		return errLogged
	}
	return nil
}

// pdfCmd is "enqueue pdf --tenant SLUG --invoice ID".
func pdfCmd(ctx context.Context, args []string, sio IO) error {
	fs := flagSet("pdf", "pdf --tenant SLUG --invoice ID", sio)
	slug := fs.String("tenant", "", "tenant slug (required)")
	var invoiceID config.DecimalInt
	fs.Var(&invoiceID, "invoice", "invoice `ID`, a positive integer in decimal digits (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := tenantctx.ValidateSlug(*slug); err != nil {
		return fmt.Errorf("%w: --tenant: %w", errUsage, err)
	}
	if invoiceID <= 0 {
		return fmt.Errorf("%w: --invoice must be a positive integer", errUsage)
	}
	b, err := openCLI(ctx, sio)
	if err != nil {
		return err
	}
	defer b.close()
	t, err := b.Catalog.TenantBySlug(ctx, *slug)
	if err != nil {
		return fmt.Errorf("tenant %s: %w", *slug, err)
	}
	switch t.Status.Decide(tenantctx.Work) {
	case tenantctx.Refuse:
		return fmt.Errorf("tenant %s is being deleted", *slug)
	case tenantctx.Wait:
		if t.Status == tenantctx.StatusProvisioning {
			// Its tables are not there yet (or not all): no invoice
			// to check, as the HTTP route answers 409.
			return fmt.Errorf("tenant %s is still provisioning (its tenant:migrate has not finished): nothing enqueued", *slug)
		}
		b.logger.Warn("tenant is not active: the render waits until it is", "tenant_id", t.ID, "status", t.Status)
	}
	// As the HTTP route does: no task for an invoice the tenant does not
	// have (it would only be archived).
	var exists bool
	var check pgx.Batch
	invoice.QueueExists(&check, int64(invoiceID), &exists)
	if err := placement.InTenantBatch(tenantctx.WithTenant(ctx, t), b.Pools, b.Pool, &check); err != nil {
		return fmt.Errorf("check invoice %d of tenant %s: %w", invoiceID, *slug, err)
	}
	if !exists {
		return fmt.Errorf("invoice %d not found in tenant %s: nothing enqueued", invoiceID, *slug)
	}
	res, err := b.Enqueuer.Enqueue(ctx, tasks.InvoicePDF{TenantID: t.ID, InvoiceID: int64(invoiceID)})
	if err != nil {
		return err
	}
	return json.NewEncoder(sio.Stdout).Encode(map[string]any{
		"task_id": res.Info.ID, "queue": res.Info.Queue, "state": res.Info.State.String(),
		"existing": res.Existing, "tenant_id": t.ID,
	})
}

// migrateCmd is "enqueue migrate --all [--wait] [--timeout D]".
func migrateCmd(ctx context.Context, args []string, sio IO) error {
	fs := flagSet("migrate", "migrate --all [--wait] [--timeout 10m] [--poll 500ms]", sio)
	all := fs.Bool("all", false, "enqueue a migration for every tenant (provisioning, active, suspended); required")
	wait := fs.Bool("wait", false, "wait for the migrations and show progress; exit 1 listing the tenants that failed, 130 when interrupted (SIGTERM, Ctrl-C), saying what is left")
	timeout := fs.Duration("timeout", defaultWaitTimeout, "with --wait: how long to wait before giving up")
	poll := fs.Duration("poll", defaultPollInterval, "with --wait: how often to check the tasks")
	if err := parse(fs, args); err != nil {
		return err
	}
	if !*all {
		return fmt.Errorf("%w: --all is required (per-tenant migrations run through tenant:migrate)", errUsage)
	}
	if *timeout <= 0 || *poll <= 0 {
		return fmt.Errorf("%w: --timeout and --poll must be positive", errUsage)
	}
	b, err := openCLI(ctx, sio)
	if err != nil {
		return err
	}
	defer b.close()

	enqueued, err := b.Tenancy.MigrateAll(ctx)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w while enqueuing: %d tenant migrations enqueued (the workers run them); running \"enqueue migrate --all\" again enqueues the rest (a tenant's migration is never queued twice)",
			errInterrupted, len(enqueued))
	}
	if re := (*tenancy.MigrationsRefusedError)(nil); errors.As(err, &re) {
		return fmt.Errorf("%w (%d enqueued; run it again once there is room: a tenant's migration is never queued twice)", err, len(enqueued))
	}
	if err != nil {
		return fmt.Errorf("%w (%d enqueued before the error)", err, len(enqueued))
	}
	fmt.Fprintf(sio.Stdout, "enqueued %d tenant migrations\n", len(enqueued))
	if !*wait {
		return nil
	}
	return waitMigrations(ctx, b.Enqueuer, enqueued, waitOptions{
		timeout: *timeout, poll: *poll, out: sio.Stdout, terminal: sio.Terminal,
		tenant: b.Postgres.TenantByID, hold: b.Tenancy.QueueHold,
	})
}

// IsTerminal reports whether f is a character device (a terminal), where
// progress is drawn on one updating line.
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
