package main

import (
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/procstat"
)

// With REDIS_URL and DATABASE_URL the bench cannot see the servers'
// processes: the pdf burst's CPU note and row must leave them out (as
// the middleware scenario's do, and as README.md says), not report
// "redis-server 0 µs, postgres 0 µs" as if they had cost nothing.
func TestBurstCPULeavesOutUnmeasuredServers(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	from := burstSample{servers: cpuSample{at: t0}}
	to := burstSample{servers: cpuSample{at: t0.Add(time.Second), self: 100 * time.Millisecond}, worker: 2 * time.Second}
	c := to.since(from, 1000)
	if s := c.String(); strings.Contains(s, "redis-server") || strings.Contains(s, "postgres") {
		t.Errorf("servers not measured, yet the note reports them: %q", s)
	}
	if name := c.parts(); name != "worker" {
		t.Errorf("servers not measured: the row sums %q, want worker", name)
	}

	measured := burstSample{servers: cpuSample{at: t0.Add(time.Second), redis: time.Second, postgres: time.Second, redisOK: true, postgresOK: true}, worker: 2 * time.Second}
	from.servers.redisOK, from.servers.postgresOK = true, true
	m := measured.since(from, 1000)
	if s := m.String(); !strings.Contains(s, "redis-server 1000 µs") || !strings.Contains(s, "postgres 1000 µs") {
		t.Errorf("measured servers missing from the note: %q", s)
	}
	if name := m.parts(); name != "worker + redis + postgres" {
		t.Errorf("the row sums %q, want worker + redis + postgres", name)
	}
}

// The middleware scenario's CPU rows name the processes their figure
// sums: with REDIS_URL and DATABASE_URL the servers are not measured, and
// a row that says "bench + redis + postgres" over the bench's CPU alone
// (or a ratio of two such rows) passes the bench's CPU off as the whole
// machine's (README: the CPU rows then leave out the servers it cannot
// see).
func TestMiddlewareCPURowsLeaveOutUnmeasuredServers(t *testing.T) {
	bench := cpuUse{wall: time.Second, self: 300 * time.Millisecond}
	pinned := cpuUse{wall: time.Second, self: 600 * time.Millisecond}
	s := &Scenario{}
	addCPURows(s, bench, pinned, pinned, 1000)
	for _, m := range s.Metrics {
		if strings.Contains(m.Name, "redis") || strings.Contains(m.Name, "postgres") || strings.Contains(m.Name, "PostgreSQL") {
			t.Errorf("servers not measured, yet row %q (%v %s) names them", m.Name, m.Value, m.Unit)
		}
		if m.Baseline != nil && (strings.Contains(m.Baseline.Name, "redis") || strings.Contains(m.Baseline.Name, "postgres")) {
			t.Errorf("servers not measured, yet the baseline of %q is %q", m.Name, m.Baseline.Name)
		}
	}
	if len(s.Metrics) != 3 {
		t.Errorf("%d CPU rows, want 3 (bare, pinned, InTenant)", len(s.Metrics))
	}

	measured := func(u cpuUse) cpuUse {
		u.redis, u.postgres, u.redisMeasured, u.postgresMeasured = time.Second, time.Second, true, true
		return u
	}
	s = &Scenario{}
	addCPURows(s, measured(bench), measured(pinned), measured(pinned), 1000)
	for _, m := range s.Metrics[:3] {
		if !strings.Contains(m.Name, "redis") || !strings.Contains(m.Name, "postgres") {
			t.Errorf("servers measured, yet row %q does not name them", m.Name)
		}
	}
	if len(s.Metrics) != 4 {
		t.Errorf("%d CPU rows with PostgreSQL measured, want 4", len(s.Metrics))
	}
}

// The unchanged burst's rate is reported as "no render": a burst in which
// the worker rendered (or did not keep every stored document) must fail,
// not stand for the rate without renders.
func TestUnchangedBurstMustNotRender(t *testing.T) {
	if err := checkUnchangedBurst(0, 300, 300); err != nil {
		t.Errorf("300 unchanged of 300, no render: %v", err)
	}
	for _, c := range []struct {
		renders, unchanged float64
	}{{1, 299}, {300, 0}, {0, 299}} {
		if err := checkUnchangedBurst(c.renders, c.unchanged, 300); err == nil {
			t.Errorf("%v renders and %v unchanged of 300 accepted as an unchanged burst", c.renders, c.unchanged)
		}
	}
}

// The burst's note says how the whole machine's CPUs spent it (/proc/stat:
// the kernel's threads and the idle time no process counts), as shares of
// the burst's CPU time, and says nothing of it when the counters did not
// move.
func TestBurstCPUNotesTheMachinesStates(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	from := burstSample{servers: cpuSample{at: t0}, machine: procstat.Machine{User: 10 * time.Second, Kernel: 5 * time.Second, Idle: 40 * time.Second}}
	to := burstSample{servers: cpuSample{at: t0.Add(time.Second)}, worker: time.Second,
		machine: procstat.Machine{User: 11 * time.Second, Kernel: 5600 * time.Millisecond, Idle: 40300 * time.Second / 1000, IOWait: 100 * time.Millisecond}}
	s := to.since(from, 100).String()
	if !strings.Contains(s, "50% user, 30% kernel, 15% idle, 5% iowait, 0% steal") {
		t.Errorf("the machine's shares missing or wrong in the note: %q", s)
	}
	still := burstSample{servers: cpuSample{at: t0.Add(time.Second)}, worker: time.Second, machine: from.machine}
	if s := still.since(from, 100).String(); strings.Contains(s, "the machine's CPUs") {
		t.Errorf("the machine's counters did not move, yet the note gives shares: %q", s)
	}
}
