package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"
)

// smokeSizes make every scenario run end to end in well under a minute:
// numbers from them mean nothing, the test checks that each scenario
// works and reports what it should.
var smokeSizes = sizes{
	Tenants: 10, MiddlewareN: 300, Rounds: 1, WarmN: 50, LookupN: 500,
	PDFBurst: 20, PDFPaced: 2 * time.Second, EnqueueN: 400, EnqueueRounds: 2, BulkPairs: 2, Clients: 8,
	FleetTenants: 10, OverdueEach: 3, RenderBaseline: 200 * time.Millisecond,
	FairBacklog: 300, FairQuietSamples: 5, FairPDFBurst: 40, FairShareWindow: 500 * time.Millisecond,
	FairIdleSamples: 5, FairDispatchSamples: 50, FairScaleTenants: 200,
	ScaleTenants: 10,
}

// TestRunAllScenarios runs the load command's nine scenarios at smoke
// sizes against its own redis-server and PostgreSQL, with the real
// cmd/worker and cmd/enqueue built from this tree, and checks the report:
// every scenario ran, every number is there with its baseline and ratio,
// every target was judged, and the JSON and the table carry them.
func TestRunAllScenarios(t *testing.T) {
	t.Setenv("REDIS_URL", "")
	t.Setenv("DATABASE_URL", "")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	all, err := selectScenarios("")
	if err != nil {
		t.Fatal(err)
	}
	// One Celery pool size (one process per CPU, the first of the
	// default pair) runs the same python scenario code as two;
	// TestPythonScenario runs the default pair and checks the fastest is
	// chosen.
	rep, err := runBench(ctx, options{sizes: smokeSizes, mode: "smoke", selected: all, logger: quietLogger(), celeryPool: []int{runtime.NumCPU()}})
	if err != nil {
		t.Fatalf("bench did not start: %v", err)
	}
	if len(rep.Scenarios) != len(scenarios) {
		t.Fatalf("%d scenarios in the report, want %d", len(rep.Scenarios), len(scenarios))
	}
	if rep.RedisVersion == "" || rep.PostgresVersion == "" {
		t.Errorf("server versions missing: redis %q, postgres %q", rep.RedisVersion, rep.PostgresVersion)
	}
	targets := 0
	for _, s := range rep.Scenarios {
		if s.Error != "" || s.Skipped != "" {
			t.Errorf("scenario %s: error %q, skipped %q", s.Name, s.Error, s.Skipped)
			continue
		}
		if s.Bound == "" {
			t.Errorf("scenario %s says nothing about what bounds it", s.Name)
		}
		if len(s.Metrics) == 0 {
			t.Errorf("scenario %s has no metrics", s.Name)
		}
		for _, m := range s.Metrics {
			if math.IsNaN(m.Value) || math.IsInf(m.Value, 0) || m.Value < 0 {
				t.Errorf("%s / %s = %v", s.Name, m.Name, m.Value)
			}
			if m.Baseline != nil {
				if !(m.Baseline.Value > 0) || m.Ratio == nil {
					t.Errorf("%s / %s: baseline %v, ratio %v", s.Name, m.Name, m.Baseline.Value, m.Ratio)
				}
			}
			if m.Target != nil {
				targets++
				if !(m.Value > 0) || m.Met == nil {
					t.Errorf("%s / %s: target %q not judged (value %v)", s.Name, m.Name, m.Target.Text, m.Value)
				}
			}
		}
	}
	// The issues' targets: middleware ratio, two lookup p99s, for each of
	// the pdf scenario's two kinds of invoice the end-to-end rate and
	// pdf.Render's CPU and allocation, enqueue ratio, bulk enqueue ratio,
	// two migration times,
	// the sweep; fairness: the quiet tenant's p99, two throughput costs,
	// three shares, two idle pickups, dispatch scaling; scaleout: the
	// tenants' balance over two databases; python: the pdf scenario's
	// two rates over the Celery worker's.
	if targets != 26 {
		t.Errorf("%d metrics with a target, want 26", targets)
	}
	// scaleout, part 2: one redis-server, the cluster with one queue per
	// class, the cluster with QUEUE_SHARDS=3 (two rows: against the
	// single server and against one queue per class), each with its
	// baseline.
	for _, s := range rep.Scenarios {
		if s.Name != "scaleout" {
			continue
		}
		sharded := 0
		for _, m := range s.Metrics {
			if strings.Contains(m.Name, "QUEUE_SHARDS=3") {
				sharded++
				if m.Baseline == nil || m.Ratio == nil {
					t.Errorf("scaleout / %s has no baseline", m.Name)
				}
			}
		}
		if sharded != 2 {
			t.Errorf("scaleout: %d QUEUE_SHARDS=3 rows, want 2", sharded)
		}
	}
	// enqueue: its two targets are judged on the median of the rounds'
	// ratios, and the JSON has every round's figures and pair ratio.
	for _, s := range rep.Scenarios {
		if s.Name == "enqueue" {
			js, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			checkPairedTargets(t, js)
		}
	}
	mw := rep.Scenarios[0]
	var cpuNote bool
	for _, n := range mw.Notes {
		if strings.HasPrefix(n, "CPU per task") && strings.Contains(n, "redis-server") && strings.Contains(n, "postgres") {
			cpuNote = true
		}
	}
	if !cpuNote {
		t.Errorf("middleware: no CPU note naming redis-server and postgres in %q", mw.Notes)
	}

	var js bytes.Buffer
	if err := json.NewEncoder(&js).Encode(rep); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("report JSON does not decode: %v", err)
	}
	if len(back.Scenarios) != len(rep.Scenarios) || back.Mode != "smoke" {
		t.Errorf("decoded report: %d scenarios, mode %q", len(back.Scenarios), back.Mode)
	}
	var table bytes.Buffer
	printTable(&table, rep)
	for _, s := range rep.Scenarios {
		if !strings.Contains(table.String(), s.Name+"|") {
			t.Errorf("table has no rows for %s:\n%s", s.Name, table.String())
		}
	}
}

// TestSelectPDFRunsMiddleware: -scenarios pdf runs the middleware
// scenario too, whose bare asynq drain and pinned-query ratio the pdf
// scenario reports beside its own numbers.
func TestSelectPDFRunsMiddleware(t *testing.T) {
	sel, err := selectScenarios("pdf")
	if err != nil {
		t.Fatal(err)
	}
	if !sel["pdf"] || !sel["middleware"] || len(sel) != 2 {
		t.Errorf("selectScenarios(pdf) = %v, want pdf and middleware", sel)
	}
	sel, err = selectScenarios("lookup")
	if err != nil {
		t.Fatal(err)
	}
	if len(sel) != 1 || !sel["lookup"] {
		t.Errorf("selectScenarios(lookup) = %v", sel)
	}
}
