package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestParseFlagsDefaults: without flags the load command runs every
// scenario at the full sizes, builds its binaries, writes JSON to stdout
// and profiles nothing; -quick switches to the small sizes, -tenants and
// -pdf-burst and -bulk-batch override only their size (0 keeps it), and the other flags
// reach the run's options as given.
func TestParseFlagsDefaults(t *testing.T) {
	var out strings.Builder
	cl, err := parseFlags("bench", nil, &out)
	if err != nil {
		t.Fatalf("no flags: %v\n%s", err, out.String())
	}
	if out.Len() != 0 {
		t.Errorf("no flags wrote %q", out.String())
	}
	if cl.sizes != fullSizes || cl.mode != "full" {
		t.Errorf("no flags: mode %q, sizes %+v, want full: %+v", cl.mode, cl.sizes, fullSizes)
	}
	if len(cl.selected) != len(scenarios) {
		t.Errorf("no flags selected %v, want every scenario: %s", slices.Sorted(maps.Keys(cl.selected)), names())
	}
	if cl.jsonOut != "" || cl.cpuProfile != "" || cl.workerProfile != "" || cl.verbose || cl.inProcess ||
		cl.workerBin != "" || cl.enqueueBin != "" || cl.workerConcurrency != 0 || cl.workerQueueClasses != "" {
		t.Errorf("no flags: %+v, want nothing set beyond sizes, mode and scenarios", cl)
	}

	cl, err = parseFlags("bench", []string{"-quick", "-tenants", "0", "-pdf-burst", "0", "-bulk-batch", "0"}, &out)
	if err != nil {
		t.Fatalf("-quick: %v", err)
	}
	if cl.sizes != quickSizes || cl.mode != "quick" {
		t.Errorf("-quick with zero overrides: mode %q, sizes %+v, want quick: %+v", cl.mode, cl.sizes, quickSizes)
	}
	cl, err = parseFlags("bench", []string{"-quick", "-tenants", "7", "-pdf-burst=9", "-bulk-batch", "1000"}, &out)
	if err != nil {
		t.Fatalf("-quick -tenants 7 -pdf-burst=9 -bulk-batch 1000: %v", err)
	}
	want := quickSizes
	want.FleetTenants, want.PDFBurst, want.BulkBatch = 7, 9, 1000
	if cl.sizes != want {
		t.Errorf("-quick -tenants 7 -pdf-burst=9 -bulk-batch 1000: sizes %+v, want %+v", cl.sizes, want)
	}
	if fullSizes.BulkBatch != 100 || quickSizes.BulkBatch != 100 {
		t.Errorf("bulk requests of %d (full) and %d (quick) ids, want 100 at both sizes", fullSizes.BulkBatch, quickSizes.BulkBatch)
	}

	cl, err = parseFlags("bench", []string{"-json", "out.json", "-worker-bin", "/w", "-enqueue-bin", "/e", "-worker-concurrency", "40",
		"-worker-queue-classes", "default", "-v", "-inprocess", "-cpuprofile", "cpu.prof", "-celery-concurrency", "2, 08"}, &out)
	if err != nil {
		t.Fatalf("every other flag: %v", err)
	}
	if cl.jsonOut != "out.json" || cl.workerBin != "/w" || cl.enqueueBin != "/e" || cl.workerConcurrency != 40 ||
		cl.workerQueueClasses != "default" || !cl.verbose || !cl.inProcess || cl.cpuProfile != "cpu.prof" || cl.workerProfile != "cpu.prof" ||
		!slices.Equal(cl.celeryPool, []int{2, 8}) {
		t.Errorf("every other flag: %+v", cl)
	}
	if cl.sizes != fullSizes || cl.mode != "full" {
		t.Errorf("without -quick: mode %q, want full sizes", cl.mode)
	}
	for _, bad := range []string{"0", "2,", "two", "0x8", "2000"} {
		if _, err := parseFlags("bench", []string{"-celery-concurrency", bad}, &out); err == nil || !strings.Contains(err.Error(), "-celery-concurrency") {
			t.Errorf("-celery-concurrency %q: %v, want an error naming the flag", bad, err)
		}
	}
}

// TestParseFlagsScenarios: -scenarios takes names and numbers, with
// blanks around them, and pdf brings middleware along.
func TestParseFlagsScenarios(t *testing.T) {
	for list, want := range map[string][]string{
		"lookup":         {"lookup"},
		"2, enqueue ":    {"enqueue", "lookup"},
		"8":              {"scaleout"},
		"9":              {"python"},
		"pdf,python":     {"middleware", "pdf", "python"},
		"pdf":            {"middleware", "pdf"},
		"3,sweep,1,":     nil, // an empty name is refused
		"fairness,  7  ": {"fairness"},
	} {
		var out strings.Builder
		cl, err := parseFlags("bench", []string{"-scenarios", list}, &out)
		if want == nil {
			if err == nil {
				t.Errorf("-scenarios %q accepted: %v", list, slices.Sorted(maps.Keys(cl.selected)))
			}
			continue
		}
		if err != nil {
			t.Errorf("-scenarios %q: %v\n%s", list, err, out.String())
			continue
		}
		if got := slices.Sorted(maps.Keys(cl.selected)); !slices.Equal(got, want) {
			t.Errorf("-scenarios %q selected %v, want %v", list, got, want)
		}
	}
}

// TestParseFlagsRefusesBadValues: a value a flag cannot take, a flag the
// command does not have or a -scenarios list naming no scenario is
// refused with an error naming it (and the usage, for a flag), written
// where the command writes its errors; nothing runs (the error is not
// flag.ErrHelp, so the exit status is 2). -h prints the usage.
func TestParseFlagsRefusesBadValues(t *testing.T) {
	for _, c := range []struct {
		args []string
		says []string
	}{
		{[]string{"-tenants", "many"}, []string{`invalid value "many" for flag -tenants`, "Usage of bench:"}},
		{[]string{"-pdf-burst", "1.5"}, []string{`invalid value "1.5" for flag -pdf-burst`}},
		{[]string{"-worker-concurrency", "x"}, []string{`invalid value "x" for flag -worker-concurrency`}},
		// Accepted, it ran the worker's default and the JSON said -5.
		{[]string{"-worker-concurrency", "-5"}, []string{"bench: -worker-concurrency: -5 is not a number of handlers"}},
		{[]string{"-bulk-batch", "1001"}, []string{"bench: -bulk-batch: 1001 ids a request is over the API's limit of 1000"}},
		{[]string{"-quick=maybe"}, []string{`invalid boolean value "maybe" for -quick`}},
		{[]string{"-tenants"}, []string{"flag needs an argument: -tenants"}},
		{[]string{"-workers", "4"}, []string{"flag provided but not defined: -workers", "Usage of bench:"}},
		{[]string{"-scenarios", "bogus"}, []string{`bench: unknown scenario "bogus" (have ` + names() + ")"}},
		{[]string{"-scenarios", "lookup,0"}, []string{`bench: unknown scenario "0"`}},
		{[]string{"-scenarios", "0"}, []string{`bench: unknown scenario "0"`}},
		{[]string{"-scenarios", "lookup,,pdf"}, []string{`bench: unknown scenario ""`}},
	} {
		var out strings.Builder
		_, err := parseFlags("bench", c.args, &out)
		if err == nil || errors.Is(err, flag.ErrHelp) {
			t.Errorf("%q: err %v, want it refused", c.args, err)
			continue
		}
		for _, s := range c.says {
			if !strings.Contains(out.String(), s) {
				t.Errorf("%q: wrote %q, want it to say %q", c.args, out.String(), s)
			}
		}
	}
	var out strings.Builder
	if _, err := parseFlags("bench", []string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(out.String(), "Usage of bench:") || !strings.Contains(out.String(), "-scenarios") {
		t.Errorf("-h wrote %q, want the usage", out.String())
	}
}

// TestRunJSONFile: -json names the file the JSON document goes to, written
// when the run ends, up to 40 minutes later. A file the command cannot
// create stops it before the run (exit 2, naming -json), as -cpuprofile's
// does: found only afterwards, it lost the run's numbers and its table.
// A file it can create gets the document, and the table goes to stderr.
func TestRunJSONFile(t *testing.T) {
	ran := 0
	defer func(r func(context.Context, options) (*Report, error)) { benchRun = r }(benchRun)
	benchRun = func(_ context.Context, o options) (*Report, error) {
		ran++
		return &Report{Mode: o.mode, Scenarios: []*Scenario{{Name: "lookup", Title: "tenant lookup latency per layer",
			Metrics: []*Metric{{Name: "in-process hit p99", Value: 0.16, Unit: "µs"}}}}}, nil
	}

	var stdout, stderr strings.Builder
	missing := filepath.Join(t.TempDir(), "no-such-dir", "bench.json")
	if code := run("bench", []string{"-quick", "-scenarios", "lookup", "-json", missing}, &stdout, &stderr); code != 2 || ran != 0 ||
		!strings.Contains(stderr.String(), "bench: -json:") {
		t.Errorf("-json in a missing directory: exit %d after %d runs, stderr %q; want exit 2 before any run, naming -json", code, ran, stderr.String())
	}

	stdout.Reset()
	stderr.Reset()
	file := filepath.Join(t.TempDir(), "bench.json")
	if code := run("bench", []string{"-quick", "-scenarios", "lookup", "-json", file}, &stdout, &stderr); code != 0 || ran != 1 {
		t.Errorf("-json %s: exit %d after %d runs, stderr %q; want 0 after one run", file, code, ran, stderr.String())
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(data, &rep); err != nil || rep.Mode != "quick" || len(rep.Scenarios) != 1 {
		t.Errorf("-json file holds %q (%v), want the run's report", data, err)
	}
	if stdout.Len() != 0 || !strings.Contains(stderr.String(), "in-process hit p99") {
		t.Errorf("stdout %q, stderr %q: want the JSON in the file only and the table on stderr", stdout.String(), stderr.String())
	}
}
