package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the JSON document the command prints.
type Report struct {
	GoVersion       string      `json:"go_version"`
	GOOS            string      `json:"goos"`
	GOARCH          string      `json:"goarch"`
	NumCPU          int         `json:"num_cpu"`
	GOMAXPROCS      int         `json:"gomaxprocs"`
	RedisVersion    string      `json:"redis_version"`
	PostgresVersion string      `json:"postgres_version"`
	Mode            string      `json:"mode"` // quick, full, or a test's smoke sizes
	StartedAt       time.Time   `json:"started_at"`
	DurationSeconds float64     `json:"duration_seconds"`
	Notes           []string    `json:"notes"`
	Scenarios       []*Scenario `json:"scenarios"`
}

// Scenario is one scenario's numbers.
type Scenario struct {
	Name  string         `json:"name"`
	Title string         `json:"title"`
	Sizes map[string]any `json:"sizes"`
	// Metrics are the scenario's measured numbers, each with its baseline
	// and target where it has them.
	Metrics []*Metric `json:"metrics"`
	// Bound says what limits the numbers.
	Bound string `json:"bound,omitempty"`
	// Results are numbers by a stable key, for scripts reading the JSON
	// (the python scenario's PDFs/s and ratios).
	Results map[string]float64 `json:"results,omitempty"`
	Notes   []string           `json:"notes,omitempty"`
	Error   string             `json:"error,omitempty"`
	Skipped string             `json:"skipped,omitempty"`
	Seconds float64            `json:"seconds"`
}

// Metric is one measured number.
type Metric struct {
	Name     string    `json:"name"`
	Value    float64   `json:"value"`
	Unit     string    `json:"unit"`
	Rounds   []float64 `json:"rounds,omitempty"`
	Baseline *Baseline `json:"baseline,omitempty"`
	// Ratio is Value / Baseline.Value.
	Ratio *float64 `json:"ratio,omitempty"`
	// Pairs, when set, are the ratios of rounds that measured the metric
	// and its baseline back to back (Rounds[i] / Baseline.Rounds[i]); a
	// target on the ratio is then judged on their median, not on Ratio.
	Pairs  *Pairs  `json:"pairs,omitempty"`
	Target *Target `json:"target,omitempty"`
	Met    *bool   `json:"met,omitempty"`
}

// Pairs are a metric's per-round ratios to its baseline, each from a round
// that measured both back to back, so that a slow stretch of the machine
// hits both sides of a ratio alike.
type Pairs struct {
	Ratios []float64 `json:"ratios"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
}

// Baseline is the number a metric is compared with, from the same run.
type Baseline struct {
	Name   string    `json:"name"`
	Value  float64   `json:"value"`
	Unit   string    `json:"unit"`
	Rounds []float64 `json:"rounds,omitempty"`
}

// Target is a goal from the issue: Value compared with Op ("<", "<=" or ">=")
// on the metric's value, or on its ratio when OnRatio.
type Target struct {
	Op      string  `json:"op"`
	Value   float64 `json:"value"`
	OnRatio bool    `json:"on_ratio"`
	// JudgedOn names the number Met compares: "value", "ratio" (the
	// metric's Ratio) or "pairs.median" (the median of its Pairs, for a
	// ratio target of a metric with pairs).
	JudgedOn string `json:"judged_on"`
	Text     string `json:"text"`
}

// add appends a metric and returns it.
func (s *Scenario) add(name string, value float64, unit string) *Metric {
	m := &Metric{Name: name, Value: value, Unit: unit}
	s.Metrics = append(s.Metrics, m)
	return m
}

// note appends a note.
func (s *Scenario) note(format string, args ...any) {
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

// against sets the metric's baseline and ratio.
func (m *Metric) against(name string, value float64, unit string, rounds []float64) *Metric {
	m.Baseline = &Baseline{Name: name, Value: value, Unit: unit, Rounds: rounds}
	if value != 0 {
		r := m.Value / value
		m.Ratio = &r
	}
	return m
}

// target sets the metric's target and whether it was met. A ratio target
// is judged on the median of the metric's pairs when it has them (set them
// first, with paired), else on its ratio.
func (m *Metric) target(op string, value float64, onRatio bool, text string) *Metric {
	m.Target = &Target{Op: op, Value: value, OnRatio: onRatio, JudgedOn: "value", Text: text}
	v := m.Value
	switch {
	case onRatio && m.Pairs != nil:
		m.Target.JudgedOn = "pairs.median"
		v = m.Pairs.Median
	case onRatio:
		m.Target.JudgedOn = "ratio"
		if m.Ratio == nil {
			return m
		}
		v = *m.Ratio
	}
	var met bool
	switch op {
	case "<":
		met = v < value
	case "<=":
		met = v <= value
	case ">=":
		met = v >= value
	}
	m.Met = &met
	return m
}

// withRounds records the per-round values behind a median.
func (m *Metric) withRounds(r []float64) *Metric {
	m.Rounds = r
	return m
}

// paired sets the metric's pairs from its rounds and its baseline's, round
// i of one against round i of the other: call it for rounds that measured
// both back to back, after withRounds and against, before target.
func (m *Metric) paired() *Metric {
	if m.Baseline != nil {
		m.Pairs = pairRatios(m.Rounds, m.Baseline.Rounds)
	}
	return m
}

// pairRatios returns subject[i] / baseline[i] for each round both have
// (a round whose baseline is not positive gives no ratio), with their
// median, min and max; nil when no round gives one.
func pairRatios(subject, baseline []float64) *Pairs {
	var rs []float64
	for i := range min(len(subject), len(baseline)) {
		if baseline[i] > 0 {
			rs = append(rs, subject[i]/baseline[i])
		}
	}
	if len(rs) == 0 {
		return nil
	}
	return &Pairs{Ratios: rs, Median: median(rs), Min: slices.Min(rs), Max: slices.Max(rs)}
}

// median returns the median of xs (0 for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile returns the p-th percentile (0..100, nearest rank) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// micros and millis convert durations for metrics.
func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
func millis(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// printTable writes the aligned table of every scenario to w.
func printTable(w io.Writer, r *Report) {
	fmt.Fprintf(w, "\ntenantworker bench (%s) — %s, %d CPU, GOMAXPROCS %d, redis %s, postgres %s, %.0f s\n\n",
		r.Mode, r.GoVersion, r.NumCPU, r.GOMAXPROCS, r.RedisVersion, r.PostgresVersion, r.DurationSeconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintln(tw, "scenario\tmetric\tvalue\tunit\tbaseline\tratio\ttarget\tmet\t")
	for _, s := range r.Scenarios {
		switch {
		case s.Skipped != "":
			fmt.Fprintf(tw, "%s\tskipped: %s\t\t\t\t\t\t\t\n", s.Name, firstLine(s.Skipped))
			continue
		case s.Error != "" && len(s.Metrics) == 0:
			fmt.Fprintf(tw, "%s\tERROR: %s\t\t\t\t\t\t\t\n", s.Name, firstLine(s.Error))
			continue
		}
		for _, m := range s.Metrics {
			base, ratio, target, met := "", "", "", ""
			if m.Baseline != nil {
				base = fmt.Sprintf("%s %s (%s)", num(m.Baseline.Value), m.Baseline.Unit, m.Baseline.Name)
			}
			if m.Ratio != nil {
				ratio = fmt.Sprintf("%.2f", *m.Ratio)
			}
			if p := m.Pairs; p != nil {
				ratio += fmt.Sprintf(" (%d pairs: median %.2f, %.2f-%.2f)", len(p.Ratios), p.Median, p.Min, p.Max)
			}
			if m.Target != nil {
				target = m.Target.Text
			}
			if m.Met != nil {
				met = map[bool]string{true: "yes", false: "NO"}[*m.Met]
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.Name, m.Name, num(m.Value), m.Unit, base, ratio, target, met)
		}
		if s.Error != "" {
			fmt.Fprintf(tw, "%s\tERROR: %s\t\t\t\t\t\t\t\n", s.Name, firstLine(s.Error))
		}
	}
	_ = tw.Flush()
	for _, s := range r.Scenarios {
		if s.Bound != "" || len(s.Notes) > 0 {
			fmt.Fprintf(w, "\n[%s] %s\n", s.Name, s.Title)
			if s.Bound != "" {
				fmt.Fprintf(w, "  bound: %s\n", s.Bound)
			}
			for _, n := range s.Notes {
				fmt.Fprintf(w, "  note: %s\n", n)
			}
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// num formats a number with a precision that suits its size.
func num(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 0.1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// firstLine returns s up to its first newline.
func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
