// Package tasks owns everything about the asynq tasks of the worker: the
// stable type names and one payload struct per type, their enqueue specs
// (queue, task id, retries, timeout, retention), the one Enqueuer every
// producer uses, the generic decoding adapter, the middleware chain
// (recover -> log -> tenant), the handlers, the mux, and the scheduler loop
// that fires sweep:overdue.
package tasks
