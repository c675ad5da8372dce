package main

import (
	"strings"
	"testing"
	"time"
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
