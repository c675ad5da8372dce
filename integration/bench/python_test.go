package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestPythonScenario runs the python scenario at smoke sizes (a burst of
// 20 per kind over 10 tenants) against the bench's own redis-server and
// PostgreSQL, with the Celery + reportlab worker of integration/bench/python,
// and checks what it reports and what the Python worker wrote: a row in
// invoice_documents for every rendered invoice, each naming a file whose
// SHA-256 and size it holds, and PDFs whose text is the invoice's (pdftotext),
// Polish and Greek included with the TrueType fonts.
func TestPythonScenario(t *testing.T) {
	t.Setenv("REDIS_URL", "")
	t.Setenv("DATABASE_URL", "")
	i := slices.IndexFunc(scenarios, func(s scenario) bool { return s.name == "python" })
	if i < 0 {
		t.Fatalf("no python scenario in the run order (have %s)", names())
	}
	if i != len(scenarios)-1 {
		t.Errorf("python is scenario %d of %d, want the last", i+1, len(scenarios))
	}
	if sel, err := selectScenarios("python"); err != nil || len(sel) != 1 || !sel["python"] {
		t.Errorf("selectScenarios(python) = %v, %v", sel, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	e, err := openEnv(ctx, quietLogger(), "", "")
	if err != nil {
		t.Fatalf("bench did not start: %v", err)
	}
	defer e.close()
	sz := smokeSizes
	b := &bench{env: e, sz: sz, logger: quietLogger()}
	defer b.close()
	// As if the pdf scenario had run: the python scenario then reports
	// our rates over the Celery worker's.
	b.pdfRates = map[string]float64{singleByte.kind: 500, anyScript.kind: 400}
	s := &Scenario{Name: "python", Sizes: map[string]any{}}
	if err := scenarios[i].run(b, ctx, s); err != nil {
		t.Fatalf("python scenario: %v", err)
	}

	for _, key := range []string{"python_standard_fonts_pdfs_per_s", "python_truetype_pdfs_per_s"} {
		if !(s.Results[key] > 0) {
			t.Errorf("results[%s] = %v, want > 0 (results %v)", key, s.Results[key], s.Results)
		}
	}
	for _, key := range []string{"ratio_single_byte_vs_standard_fonts", "ratio_any_script_vs_truetype"} {
		if !(s.Results[key] > 0) {
			t.Errorf("results[%s] = %v, want > 0", key, s.Results[key])
		}
	}
	targets := 0
	for _, m := range s.Metrics {
		if m.Target != nil {
			targets++
			if m.Met == nil || m.Ratio == nil || m.Baseline == nil {
				t.Errorf("%s: target %q not judged against a baseline", m.Name, m.Target.Text)
			}
		}
	}
	// The Celery worker ran with each pool size (-celery-concurrency's
	// default: one process per CPU and four), and the ratios compare
	// against its fastest.
	pools := b.celeryConcurrency()
	if len(pools) != 2 || pools[1] != 4*pools[0] {
		t.Errorf("default pool sizes %v, want one per CPU and four per CPU", pools)
	}
	for _, k := range pythonKinds {
		best := 0.0
		for _, n := range pools {
			name := fmt.Sprintf("throughput (burst), Celery + reportlab, %s fonts, %s invoices, %d pool processes", k.fonts, k.text.kind, n)
			i := slices.IndexFunc(s.Metrics, func(m *Metric) bool { return m.Name == name })
			if i < 0 {
				t.Errorf("no row %q", name)
				continue
			}
			best = max(best, s.Metrics[i].Value)
		}
		if s.Results[k.rate] != best || !slices.Contains(pools, int(s.Results[k.rate+"_pool_processes"])) {
			t.Errorf("%s: results %v and %v pool processes, want the fastest round's %v", k.fonts, s.Results[k.rate], s.Results[k.rate+"_pool_processes"], best)
		}
	}
	if targets != 2 {
		t.Errorf("%d metrics with a target (the issue's 3x and 2x), want 2", targets)
	}
	if s.Bound == "" {
		t.Error("the scenario says nothing about what bounds it")
	}

	// What the Python worker wrote: every warm-up and burst invoice of
	// both kinds has its row, and the row its file.
	want := map[string]int{"python-standard": len(b.core.tenants) + sz.PDFBurst, "python-truetype": len(b.core.tenants) + sz.PDFBurst}
	got := map[string]int{}
	docs := filepath.Join(e.dir, "python", "documents")
	sample := map[string]string{} // fonts -> one PDF
	for _, tn := range b.core.tenants {
		rows, err := b.core.pool.Query(ctx, "SELECT font_path, storage_key, sha256, bytes FROM "+
			pgx.Identifier{tn.Schema, "invoice_documents"}.Sanitize()+" WHERE font_path LIKE 'python-%'")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var fontPath, key, sum string
			var size int64
			if err := rows.Scan(&fontPath, &key, &sum, &size); err != nil {
				t.Fatal(err)
			}
			got[fontPath]++
			path := filepath.Join(docs, tn.ID, filepath.FromSlash(key))
			data, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("tenant %s: row %s without its file: %v", tn.Slug, key, err)
				continue
			}
			if h := sha256.Sum256(data); hex.EncodeToString(h[:]) != sum || int64(len(data)) != size {
				t.Errorf("tenant %s: %s has %d bytes, sha256 %x; its row says %d, %s", tn.Slug, key, len(data), h, size, sum)
			}
			sample[fontPath] = path
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%d invoice_documents rows with font_path %s, want %d", got[k], k, n)
		}
	}

	// The PDFs are real: their text is the invoice's. The standard fonts
	// (WinAnsi) print ë but not Ł or ź; the TrueType fonts print every
	// script of the any-script invoices.
	if _, err := exec.LookPath("pdftotext"); err != nil {
		t.Fatalf("pdftotext (poppler-utils) is needed to read the PDFs: %v", err)
	}
	for fonts, texts := range map[string][]string{
		"python-standard": {"Zoë Kowalska", "Consulting, work package 10: implementation and review", "Bench Tenant"},
		"python-truetype": {"Ζωή Παπαδοπούλου / Зоя Ковальская", "Łódź", "Консультации, пакет 1: υλοποίηση και έλεγχος (wdrożenie)"},
	} {
		out, err := exec.CommandContext(ctx, "pdftotext", sample[fonts], "-").Output()
		if err != nil {
			t.Fatalf("pdftotext %s: %v", sample[fonts], err)
		}
		for _, want := range texts {
			if !strings.Contains(string(out), want) {
				t.Errorf("%s PDF %s: text has no %q:\n%s", fonts, sample[fonts], want, out)
			}
		}
	}
}

// TestPythonScenarioFailsWithTheAptLine: without the interpreter, or with
// a module missing, the python scenario fails (no skip) before it starts
// anything, and its error is the exact apt-get line that installs what it
// needs.
func TestPythonScenarioFailsWithTheAptLine(t *testing.T) {
	const apt = "apt-get install -y --no-install-recommends python3-celery python3-reportlab python3-psycopg2 python3-redis"
	dir := t.TempDir()
	noModule := filepath.Join(dir, "python3")
	script := "#!/bin/sh\necho 'Traceback (most recent call last):' >&2\necho \"ModuleNotFoundError: No module named 'reportlab'\" >&2\nexit 1\n"
	if err := os.WriteFile(noModule, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, bin, why string }{
		{"no interpreter", filepath.Join(dir, "missing", "python3"), "no such file or directory"},
		{"a module missing", noModule, "No module named 'reportlab'"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer func(bin string) { pythonBin = bin }(pythonBin)
			pythonBin = tt.bin
			err := (&bench{}).python(context.Background(), &Scenario{Sizes: map[string]any{}})
			var skip skipError
			if err == nil || errors.As(err, &skip) {
				t.Fatalf("python scenario with %s: %v, want an error", tt.bin, err)
			}
			if !strings.HasSuffix(err.Error(), ": "+apt) || !strings.Contains(err.Error(), tt.why) {
				t.Errorf("error %q, want it to say %q and end in %q", err, tt.why, apt)
			}
		})
	}
}
