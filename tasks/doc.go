// Package tasks is the producer's side of the task contract: what a task
// is, and how it is enqueued. It holds the stable type names, one payload
// type per task type whose queue, task id, retries, timeout, retention,
// conflict policy and validation live on the type (Payload), the one
// registration list of those types (Types, Lookup), the one Enqueuer every
// producer uses (the HTTP API, the CLI, the sweep fan-out, the scheduler),
// and the scheduler loop that fires sweep:overdue.
//
// It runs no handler, renders nothing and sends no mail: the executors
// (handlers, middleware, mux, server configuration, metrics) live in
// internal/worker, so a producer such as cmd/enqueue links none of them.
// See docs/architecture.md for the package map.
package tasks
