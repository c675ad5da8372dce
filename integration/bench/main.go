package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/gorun"
	"github.com/invoicing/tenantworker/tasks"
)

// scenario is one measurement.
type scenario struct {
	name  string
	title string
	run   func(b *bench, ctx context.Context, s *Scenario) error
}

// scenarios in run order.
var scenarios = []scenario{
	{"middleware", "worker middleware chain + pinned SELECT 1 vs bare asynq (drain tasks/s)", (*bench).middleware},
	{"lookup", "tenant lookup latency per layer", (*bench).lookup},
	{"pdf", "invoice:pdf end to end through cmd/worker", (*bench).pdf},
	{"enqueue", "POST /v1/invoices/{id}/pdf (cmd/enqueue) vs bare asynq.Client.Enqueue", (*bench).enqueue},
	{"migrate", "provision + migrate tenants through tenant:migrate (cmd/worker), then a no-op migrate --all", (*bench).migrate},
	{"sweep", "sweep:overdue over tenants with 20 overdue invoices each (cmd/worker, file mailer)", (*bench).sweep},
	{"fairness", "fair dispatch vs the plain path: a quiet tenant behind a noisy backlog, throughput cost, shares, idle pickup, dispatch scaling", (*bench).fairness},
	{"scaleout", "tenants provisioned + migrated over two PostgreSQL servers vs one; no-op tasks on a 3-master Redis Cluster (one queue per class, and QUEUE_SHARDS=3) vs one redis-server", (*bench).scaleout},
	{"python", "the Celery + reportlab worker issue 14 compares with, same job (standard fonts and TrueType), vs the pdf scenario's rates", (*bench).python},
}

// sizes are the knobs of a run; -quick and the full run differ only here.
type sizes struct {
	Tenants        int           `json:"tenants"`            // scenarios 1-4
	MiddlewareN    int           `json:"middleware_tasks"`   // tasks per drain round
	Rounds         int           `json:"rounds"`             // alternating baseline/subject rounds
	WarmN          int           `json:"warmup_tasks"`       // warm-up drain / requests
	LookupN        int           `json:"lookup_samples"`     // per layer
	PDFBurst       int           `json:"pdf_burst"`          // tasks in the throughput burst
	PDFPaced       time.Duration `json:"pdf_paced"`          // length of the latency phase
	EnqueueN       int           `json:"enqueue_requests"`   // per round
	EnqueueRounds  int           `json:"enqueue_rounds"`     // scenario 4: single, bare and bulk back to back
	BulkPairs      int           `json:"bulk_pairs"`         // scenario 4: bare and bulk pairs per round
	BulkBatch      int           `json:"bulk_batch"`         // scenario 4: invoice ids per bulk request
	Clients        int           `json:"clients"`            // concurrent enqueue clients
	FleetTenants   int           `json:"fleet_tenants"`      // scenarios 5 and 6
	OverdueEach    int           `json:"overdue_per_tenant"` // scenario 6
	RenderBaseline time.Duration `json:"render_baseline"`    // in-process render measurement
	// Scenario 7 (fairness).
	FairBacklog         int           `json:"fair_backlog"`          // the noisy tenant's renders
	FairQuietSamples    int           `json:"fair_quiet_samples"`    // quiet renders behind it
	FairPDFBurst        int           `json:"fair_pdf_burst"`        // renders per throughput burst
	FairShareWindow     time.Duration `json:"fair_share_window"`     // measuring window of the shares
	FairIdleSamples     int           `json:"fair_idle_samples"`     // idle pickups
	FairDispatchSamples int           `json:"fair_dispatch_samples"` // dispatch calls timed
	FairScaleTenants    int           `json:"fair_scale_tenants"`    // tenants with backlogs, vs 10
	// Scenario 8 (scaleout).
	ScaleTenants int `json:"scale_tenants"` // provisioned once on one database, once over two
}

var quickSizes = sizes{
	Tenants: 100, MiddlewareN: 3000, Rounds: 2, WarmN: 500, LookupN: 10000,
	PDFBurst: 300, PDFPaced: 5 * time.Second, EnqueueN: 4000, EnqueueRounds: 5, BulkPairs: 3, BulkBatch: 100, Clients: 64,
	FleetTenants: 100, OverdueEach: 20, RenderBaseline: time.Second,
	FairBacklog: 10000, FairQuietSamples: 40, FairPDFBurst: 1000, FairShareWindow: 3 * time.Second,
	FairIdleSamples: 40, FairDispatchSamples: 1000, FairScaleTenants: 10000,
	ScaleTenants: 1000,
}

var fullSizes = sizes{
	Tenants: 100, MiddlewareN: 20000, Rounds: 3, WarmN: 2000, LookupN: 200000,
	PDFBurst: 3000, PDFPaced: 30 * time.Second, EnqueueN: 20000, EnqueueRounds: 5, BulkPairs: 3, BulkBatch: 100, Clients: 64,
	FleetTenants: 1000, OverdueEach: 20, RenderBaseline: 3 * time.Second,
	FairBacklog: 100000, FairQuietSamples: 100, FairPDFBurst: 3000, FairShareWindow: 8 * time.Second,
	FairIdleSamples: 200, FairDispatchSamples: 5000, FairScaleTenants: 10000,
	ScaleTenants: 10000,
}

// bench is one run: its environment, sizes and the state scenarios share.
type bench struct {
	env    *env
	sz     sizes
	logger *slog.Logger
	core   *coreDB  // tenants of scenarios 1-4, made on first use
	fleet  *fleetDB // tenants of scenarios 5-6, made on first use
	// inProcess runs the enqueue service in the bench process.
	inProcess bool
	// bareDrain is scenario 1's bare-asynq drain rate, when it ran.
	bareDrain float64
	// pinnedRatio is scenario 1's middleware + pinned query drain over
	// bareDrain, when it ran.
	pinnedRatio float64
	// workerProfile, when set, makes each cmd/worker write a CPU profile
	// to workerProfile.worker-<name>.
	workerProfile string
	// pdfConcurrency, when set, is the pdf scenario's WORKER_CONCURRENCY.
	pdfConcurrency int
	// pdfQueueClasses, when set, is the pdf scenario's WORKER_QUEUE_CLASSES.
	pdfQueueClasses string
	// pdfRates are the pdf scenario's burst rates by kind of invoice
	// (seedText.kind), when it ran: the python scenario reports them over
	// the Celery worker's.
	pdfRates map[string]float64
	// celeryPool, when set, are the pool sizes the python scenario runs
	// the Celery worker with (-celery-concurrency).
	celeryPool []int
}

func main() { os.Exit(run(os.Args[0], os.Args[1:], os.Stdout, os.Stderr)) }

// benchRun is the run that run starts: runBench (a variable for tests).
var benchRun = runBench

// run is the load command: args without the program name (name is the
// one its usage names), the JSON document to stdout (or -json's file) and
// the table and errors to stderr. It returns the exit status.
func run(name string, args []string, stdout, stderr io.Writer) int {
	cl, err := parseFlags(name, args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		return 2
	}
	if cl.cpuProfile != "" {
		f, err := os.Create(cl.cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}

	// The JSON's file is made before the run, as the profile's is: a path
	// the command cannot write stops it now, not at the end of a run of
	// up to 40 minutes, whose numbers would be lost with it.
	var out io.Writer = stdout
	var jsonFile *os.File
	if cl.jsonOut != "" {
		jsonFile, err = os.Create(cl.jsonOut)
		if err != nil {
			fmt.Fprintln(stderr, "bench: -json:", err)
			return 2
		}
		defer jsonFile.Close()
		out = jsonFile
	}

	level := slog.LevelWarn
	if cl.verbose {
		level = slog.LevelInfo
	}
	cl.logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Under `go run` (the package doc's commands), also once the go
	// command ends: it passes no signal on (package gorun), so a script's
	// `kill $!` of `go run ./integration/bench &` ended it alone, and the
	// bench went on with its redis-server, PostgreSQL and binaries.
	ctx, stopWatch := gorun.Context(ctx, func(goPID int) {
		progress("go run (pid %d) ended: stopping", goPID)
	})
	defer stopWatch()
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills at once; children die with us (Pdeathsig)
	}()

	rep, err := benchRun(ctx, cl.options)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	exit := 0
	if rep.failed() {
		exit = 1
	}

	// A JSON document that could not be written still leaves the table.
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	err = enc.Encode(rep)
	if jsonFile != nil {
		err = errors.Join(err, jsonFile.Close())
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench: write json:", err)
		exit = 1
	}
	printTable(stderr, rep)
	if ctx.Err() != nil {
		return 130
	}
	return exit
}

// commandLine is what the load command's arguments ask for: the run's
// options (all but the logger) and what run does around it.
type commandLine struct {
	options
	jsonOut    string // -json: the JSON document's file; stdout when empty
	cpuProfile string // -cpuprofile: the bench process's CPU profile
	verbose    bool   // -v: log set-up steps
}

// parseFlags parses the load command's arguments (without the program
// name; name is the one usage names). It writes what is wrong to output:
// a flag's error and the usage, as the flag package does, or "bench: " and
// the error of a -scenarios list naming no scenario; the error it returns
// is then flag.ErrHelp for -h (exit 0), anything else for a bad command
// line (exit 2). Without flags it asks for the full sizes and every
// scenario; -quick for the small sizes; -tenants, -pdf-burst and
// -bulk-batch override their size when positive (-bulk-batch up to the
// API's limit of ids a request); -worker-concurrency may not be negative.
func parseFlags(name string, args []string, output io.Writer) (commandLine, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(output)
	quick := fs.Bool("quick", false, "small sizes: the whole run takes about 3.5 minutes on 2 CPUs (one scenario well under one)")
	only := fs.String("scenarios", "", "comma-separated scenarios to run (default all): "+names())
	jsonOut := fs.String("json", "", "write the JSON document to this file instead of stdout (created before the run: one that cannot be is refused)")
	workerBin := fs.String("worker-bin", "", "use this cmd/worker binary instead of building one")
	enqueueBin := fs.String("enqueue-bin", "", "use this cmd/enqueue binary instead of building one")
	tenants := fs.Int("tenants", 0, "override the fleet size of scenarios 5 and 6")
	pdfBurst := fs.Int("pdf-burst", 0, "override the pdf scenario's burst size (tasks per kind)")
	bulkBatch := fs.Int("bulk-batch", 0, fmt.Sprintf("override the enqueue scenario's invoice ids per bulk request (default %d; at most %d, the API's limit)", fullSizes.BulkBatch, tasks.MaxBatch))
	workerConcurrency := fs.Int("worker-concurrency", 0, "WORKER_CONCURRENCY of the cmd/worker processes of the pdf scenario (default: the worker's default)")
	workerQueueClasses := fs.String("worker-queue-classes", "", "WORKER_QUEUE_CLASSES of the pdf scenario's cmd/worker, e.g. default (default: every class)")
	celeryPool := fs.String("celery-concurrency", "", "comma-separated pool sizes the python scenario runs the Celery worker with, e.g. 2,8 (default: one process per CPU and four per CPU; the ratios compare against the fastest)")
	verbose := fs.Bool("v", false, "log set-up steps")
	inProcess := fs.Bool("inprocess", false, "run the enqueue service inside the bench (enqueueapp.RunWith) instead of as cmd/enqueue, so -cpuprofile covers it")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the bench process (its clients, and scenarios 1-2 in full) to this file, and one of each cmd/worker it starts to FILE.worker-<name> (the scenario, with the mode and round where it starts several)")
	if err := fs.Parse(args); err != nil {
		return commandLine{}, err
	}

	sz := fullSizes
	mode := "full"
	if *quick {
		sz, mode = quickSizes, "quick"
	}
	if *tenants > 0 {
		sz.FleetTenants = *tenants
	}
	if *pdfBurst > 0 {
		sz.PDFBurst = *pdfBurst
	}
	if *bulkBatch > tasks.MaxBatch {
		err := fmt.Errorf("-bulk-batch: %d ids a request is over the API's limit of %d", *bulkBatch, tasks.MaxBatch)
		fmt.Fprintln(output, "bench:", err)
		return commandLine{}, err
	}
	if *bulkBatch > 0 {
		sz.BulkBatch = *bulkBatch
	}
	// The pdf scenario sets WORKER_CONCURRENCY only when it is positive:
	// a negative value ran the worker's default while the JSON's sizes
	// gave it as the worker's concurrency.
	if *workerConcurrency < 0 {
		err := fmt.Errorf("-worker-concurrency: %d is not a number of handlers (0: the worker's default)", *workerConcurrency)
		fmt.Fprintln(output, "bench:", err)
		return commandLine{}, err
	}
	selected, err := selectScenarios(*only)
	if err != nil {
		fmt.Fprintln(output, "bench:", err)
		return commandLine{}, err
	}
	var pool []int
	if *celeryPool != "" {
		for _, f := range strings.Split(*celeryPool, ",") {
			var n config.DecimalInt
			if err := n.Set(strings.TrimSpace(f)); err != nil || n < 1 || n > 1024 {
				err = fmt.Errorf("-celery-concurrency: %q is not a positive number of processes", f)
				fmt.Fprintln(output, "bench:", err)
				return commandLine{}, err
			}
			pool = append(pool, int(n))
		}
	}
	return commandLine{
		options: options{
			sizes: sz, mode: mode, selected: selected,
			workerBin: *workerBin, enqueueBin: *enqueueBin, inProcess: *inProcess, workerProfile: *cpuProfile,
			workerConcurrency:  *workerConcurrency,
			workerQueueClasses: *workerQueueClasses,
			celeryPool:         pool,
		},
		jsonOut: *jsonOut, cpuProfile: *cpuProfile, verbose: *verbose,
	}, nil
}

// options is one invocation of the bench.
type options struct {
	sizes                 sizes
	mode                  string // "full", "quick", or a test's name for its sizes
	selected              map[string]bool
	logger                *slog.Logger
	workerBin, enqueueBin string // prebuilt binaries; built from source when empty
	inProcess             bool
	workerProfile         string // -cpuprofile: workers write FILE.worker-<name>
	workerConcurrency     int    // -worker-concurrency: the pdf scenario's worker
	workerQueueClasses    string // -worker-queue-classes: the pdf scenario's worker
	celeryPool            []int  // -celery-concurrency: the python scenario's pool sizes
}

// runBench starts (or connects to) Redis and PostgreSQL, runs the selected
// scenarios in order and returns the report. A scenario that fails is
// recorded in the report (Scenario.Error) and the run goes on; the error
// is for a run that could not start.
func runBench(ctx context.Context, o options) (*Report, error) {
	sz := o.sizes
	rep := &Report{
		GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH,
		NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Mode: o.mode, StartedAt: time.Now().UTC(),
	}
	if o.mode != "full" {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s mode: smaller sizes than the issue's (%d tenants for migrate and sweep, not 1,000; fewer tasks and rounds); run without -quick for the full sizes", o.mode, sz.FleetTenants))
	}
	progress("starting redis and postgres")
	e, err := openEnv(ctx, o.logger, o.workerBin, o.enqueueBin)
	if err != nil {
		return nil, err
	}
	b := &bench{env: e, sz: sz, logger: o.logger, inProcess: o.inProcess, workerProfile: o.workerProfile, pdfConcurrency: o.workerConcurrency, pdfQueueClasses: o.workerQueueClasses, celeryPool: o.celeryPool}
	rep.RedisVersion, rep.PostgresVersion = e.redisVersion, e.postgresVersion
	if os.Getenv("REDIS_URL") == "" {
		rep.Notes = append(rep.Notes, "redis: own redis-server on loopback, --save '' --appendonly no")
	}
	if os.Getenv("DATABASE_URL") == "" {
		rep.Notes = append(rep.Notes, "postgres: own throwaway server (internal/pgserver): fsync, synchronous_commit and full_page_writes off")
	}
	rep.Notes = append(rep.Notes, "everything (bench, redis, postgres, worker, enqueue service) shares this machine's CPUs; compare ratios, not absolute numbers")

	for _, sc := range scenarios {
		if !o.selected[sc.name] {
			continue
		}
		s := &Scenario{Name: sc.name, Title: sc.title, Sizes: map[string]any{}}
		rep.Scenarios = append(rep.Scenarios, s)
		if ctx.Err() != nil {
			s.Skipped = "interrupted"
			continue
		}
		progress("scenario %s: %s", sc.name, sc.title)
		start := time.Now()
		err := e.flushRedis(ctx)
		if err == nil {
			err = sc.run(b, ctx, s)
		}
		s.Seconds = time.Since(start).Seconds()
		var skip skipError
		switch {
		case errors.As(err, &skip):
			s.Skipped = skip.reason
		case err != nil:
			s.Error = err.Error()
			progress("scenario %s failed: %s", sc.name, firstLine(err.Error()))
		}
	}
	b.close()
	e.close()
	rep.DurationSeconds = time.Since(rep.StartedAt).Seconds()
	return rep, nil
}

// failed reports whether a scenario ended with an error.
func (r *Report) failed() bool {
	return slices.ContainsFunc(r.Scenarios, func(s *Scenario) bool { return s.Error != "" })
}

// skipError marks a scenario that could not run for a reason outside the
// bench (e.g. a binary that does not build yet).
type skipError struct{ reason string }

func (e skipError) Error() string { return "skipped: " + e.reason }

// names lists the scenario names.
func names() string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.name)
	}
	return strings.Join(n, ",")
}

// selectScenarios parses -scenarios (names, or numbers from 1 in run order).
func selectScenarios(list string) (map[string]bool, error) {
	sel := map[string]bool{}
	if strings.TrimSpace(list) == "" {
		for _, s := range scenarios {
			sel[s.name] = true
		}
		return sel, nil
	}
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		i := slices.IndexFunc(scenarios, func(s scenario) bool { return s.name == f })
		if i < 0 && len(f) == 1 && f[0] >= '1' && f[0] <= byte('0'+len(scenarios)) {
			i = int(f[0] - '1')
		}
		if i < 0 {
			return nil, fmt.Errorf("unknown scenario %q (have %s)", f, names())
		}
		sel[scenarios[i].name] = true
	}
	// The pdf scenario compares the worker with bare asynq's no-op drain
	// and reports the middleware + pinned query ratio of the same run:
	// the middleware scenario measures both, so it runs too.
	if sel["pdf"] {
		sel["middleware"] = true
	}
	return sel, nil
}

// progress prints a progress line on stderr.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// numCPU is the number of CPUs Go may use.
func numCPU() int { return runtime.GOMAXPROCS(0) }
