package main

import (
	"encoding/json"
	"math"
	"slices"
	"testing"
)

// TestPairRatiosMedian: the enqueue scenario's targets are judged on the
// median of its rounds' ratios, each round's subject over the same
// round's baseline, which differs from the ratio of the two medians when
// the machine's speed moved between rounds.
func TestPairRatiosMedian(t *testing.T) {
	bulk := []float64{40000, 30000, 50000, 33000, 36000}
	bare := []float64{20000, 20000, 20000, 15000, 20000}
	p := pairRatios(bulk, bare)
	if p == nil {
		t.Fatal("no pairs from five rounds")
	}
	want := []float64{2, 1.5, 2.5, 2.2, 1.8}
	if !approxEqual(p.Ratios, want) || !approx(p.Median, 2) || !approx(p.Min, 1.5) || !approx(p.Max, 2.5) {
		t.Errorf("pairs %+v, want ratios %v, median 2, min 1.5, max 2.5", p, want)
	}
	if r := median(bulk) / median(bare); approx(r, p.Median) {
		t.Errorf("the fixed inputs do not tell the two apart: ratio of medians %v, median of pairs %v", r, p.Median)
	}

	// An even number of rounds: the mean of the middle two ratios.
	if p := pairRatios([]float64{3, 1, 4, 2}, []float64{1, 1, 1, 1}); p == nil || !approx(p.Median, 2.5) {
		t.Errorf("even rounds: %+v, want median 2.5", p)
	}
	// A round without its baseline (unequal lengths) or with a baseline
	// that is not positive gives no pair; no pair at all gives nil.
	if p := pairRatios([]float64{4, 6, 9}, []float64{2, 0}); p == nil || !approxEqual(p.Ratios, []float64{2}) {
		t.Errorf("unequal rounds, one zero baseline: %+v, want the one ratio 2", p)
	}
	if p := pairRatios([]float64{1}, nil); p != nil {
		t.Errorf("no baseline rounds: %+v, want nil", p)
	}
	if p := pairRatios([]float64{1, 2}, []float64{0, -1}); p != nil {
		t.Errorf("no positive baseline: %+v, want nil", p)
	}
}

// TestTargetJudgedOnPairMedian: a ratio target of a metric with pairs is
// judged on their median and says so; without pairs on the ratio of the
// medians, as before; the JSON carries every round's figures, each pair's
// ratio, their median, min and max beside today's fields.
func TestTargetJudgedOnPairMedian(t *testing.T) {
	bulk := []float64{41000, 30000, 42000}
	bare := []float64{20000, 16000, 22000}
	// Ratio of the medians 41000 / 20000 = 2.05; the pairs 2.05, 1.875,
	// 1.909: median 1.909.
	m := (&Metric{Name: "bulk", Value: median(bulk), Unit: "tasks/s"}).withRounds(bulk).
		against("bare", median(bare), "enqueues/s", bare).paired().target(">=", 2, true, "median of the rounds' ratios >= 2")
	if m.Met == nil || *m.Met || m.Target.JudgedOn != "pairs.median" {
		t.Errorf("met %v judged on %q with ratio %.3f and pairs %+v; want not met, judged on pairs.median", m.Met, m.Target.JudgedOn, *m.Ratio, m.Pairs)
	}
	plain := (&Metric{Name: "bulk", Value: median(bulk), Unit: "tasks/s"}).withRounds(bulk).
		against("bare", median(bare), "enqueues/s", bare).target(">=", 2, true, "ratio >= 2")
	if plain.Met == nil || !*plain.Met || plain.Target.JudgedOn != "ratio" || plain.Pairs != nil {
		t.Errorf("without pairs: met %v judged on %q, pairs %+v; want met on the ratio 2.05", plain.Met, plain.Target.JudgedOn, plain.Pairs)
	}
	if v := (&Metric{Value: 3}).target("<", 5, false, "< 5"); v.Target.JudgedOn != "value" || !*v.Met {
		t.Errorf("a value target: judged on %q, met %v", v.Target.JudgedOn, *v.Met)
	}

	js, err := json.Marshal(&Scenario{Name: "enqueue", Sizes: map[string]any{"rounds": len(bulk)}, Metrics: []*Metric{m}})
	if err != nil {
		t.Fatal(err)
	}
	checkPairedTargets(t, js)
}

// checkPairedTargets checks a scenario's JSON (as the load command writes
// it) the way a reader of the enqueue scenario's report needs it: each
// metric whose target is on a ratio and that has per-round figures
// carries today's fields (value, rounds, baseline with its rounds, ratio,
// target, met), one pair ratio per round of its own (at least
// sizes.rounds: the bulk row has several pairs per round), their median,
// min and max, and a target judged on that median.
func checkPairedTargets(t *testing.T, scenarioJSON []byte) {
	t.Helper()
	var s struct {
		Name    string         `json:"name"`
		Sizes   map[string]any `json:"sizes"`
		Metrics []map[string]json.RawMessage
	}
	if err := json.Unmarshal(scenarioJSON, &s); err != nil {
		t.Fatalf("scenario JSON: %v", err)
	}
	rounds, _ := s.Sizes["rounds"].(float64)
	judged := 0
	for _, raw := range s.Metrics {
		var m struct {
			Name     string    `json:"name"`
			Value    float64   `json:"value"`
			Rounds   []float64 `json:"rounds"`
			Ratio    *float64  `json:"ratio"`
			Baseline *struct {
				Rounds []float64 `json:"rounds"`
			} `json:"baseline"`
			Pairs *struct {
				Ratios           []float64 `json:"ratios"`
				Median, Min, Max *float64
			} `json:"pairs"`
			Target *struct {
				Op       string  `json:"op"`
				Value    float64 `json:"value"`
				OnRatio  bool    `json:"on_ratio"`
				JudgedOn string  `json:"judged_on"`
			} `json:"target"`
			Met *bool `json:"met"`
		}
		b, _ := json.Marshal(raw)
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s metric JSON: %v", s.Name, err)
		}
		if m.Target == nil || !m.Target.OnRatio || len(m.Rounds) == 0 {
			continue
		}
		judged++
		if m.Baseline == nil || len(m.Baseline.Rounds) != len(m.Rounds) || m.Ratio == nil || m.Met == nil {
			t.Errorf("%s / %s: baseline %+v, ratio %v, met %v: today's fields missing", s.Name, m.Name, m.Baseline, m.Ratio, m.Met)
			continue
		}
		if m.Pairs == nil || m.Pairs.Median == nil || m.Pairs.Min == nil || m.Pairs.Max == nil {
			t.Errorf("%s / %s: no pairs with median, min and max in %s", s.Name, m.Name, b)
			continue
		}
		if float64(len(m.Rounds)) < rounds || len(m.Pairs.Ratios) != len(m.Rounds) {
			t.Errorf("%s / %s: %d rounds, %d pair ratios, sizes.rounds %v", s.Name, m.Name, len(m.Rounds), len(m.Pairs.Ratios), rounds)
		}
		for i, r := range m.Pairs.Ratios {
			if i < len(m.Rounds) && !approx(r, m.Rounds[i]/m.Baseline.Rounds[i]) {
				t.Errorf("%s / %s: pair %d ratio %v, want %v / %v", s.Name, m.Name, i+1, r, m.Rounds[i], m.Baseline.Rounds[i])
			}
		}
		if med := median(m.Pairs.Ratios); !approx(*m.Pairs.Median, med) || !approx(*m.Pairs.Min, slices.Min(m.Pairs.Ratios)) || !approx(*m.Pairs.Max, slices.Max(m.Pairs.Ratios)) {
			t.Errorf("%s / %s: pairs median/min/max %v/%v/%v of %v", s.Name, m.Name, *m.Pairs.Median, *m.Pairs.Min, *m.Pairs.Max, m.Pairs.Ratios)
		}
		want := map[string]bool{"<": *m.Pairs.Median < m.Target.Value, "<=": *m.Pairs.Median <= m.Target.Value, ">=": *m.Pairs.Median >= m.Target.Value}[m.Target.Op]
		if m.Target.JudgedOn != "pairs.median" || *m.Met != want {
			t.Errorf("%s / %s: target judged on %q, met %v; want judged on pairs.median %v %s %v", s.Name, m.Name, m.Target.JudgedOn, *m.Met, *m.Pairs.Median, m.Target.Op, m.Target.Value)
		}
	}
	if judged == 0 {
		t.Errorf("%s: no ratio target with rounds in %s", s.Name, scenarioJSON)
	}
}

// approx reports whether a and b agree to 1e-9 of their size.
func approx(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// approxEqual is approx over two slices.
func approxEqual(a, b []float64) bool {
	return slices.EqualFunc(a, b, approx)
}
