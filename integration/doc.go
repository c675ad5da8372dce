// Package integration holds the end-to-end tests: they build cmd/worker and
// cmd/enqueue, run them as processes against a real redis-server, a real
// PostgreSQL 15 and (where a test needs it) PgBouncer, all started by the
// tests on free loopback ports (internal/testenv), and check what a user or
// an operator would see: the whole HTTP story, the dev stack, tenant
// isolation under load, crashes and restarts, and hostile input.
//
// It ships in no binary. The load command lives in integration/bench.
package integration
