// Package enqueueapp wires and runs the HTTP enqueue service (package
// httpapi) and its operator CLI.
//
// Run opens the shared backend (package backend: pools, migrated catalog
// behind its cache, documents, the one tasks.Enqueuer with its enqueues
// autopipelined unless REDIS_AUTOPIPELINE=false, the tenant lifecycle) and
// serves the HTTP API (package httpapi) with bounded timeouts; it shuts
// down gracefully when ctx is cancelled (in-flight requests get
// SHUTDOWN_TIMEOUT). RunWith takes Options so that a dev mode can hand in a
// backend and a listener it built itself.
//
// Configuration is internal/config's: the flags are applied between
// config.Parse and Config.Resolve; the listen address defaults to
// config.DefaultEnqueueHTTPAddr. A busy port fails before any connection is
// made, with one line naming the address.
//
// Main is the command line of cmd/enqueue:
//
//	enqueue [serve] [--addr ADDR]
//	enqueue migrate --all [--wait] [--timeout 10m] [--poll 500ms]
//	enqueue pdf --tenant SLUG --invoice ID
//	enqueue db list | db add NAME URL | db remove NAME
//	enqueue tenant add SLUG [--name N] [--plan P] [--database DB] [--time-zone ZONE]
//	enqueue tenant move SLUG --to DB | tenant time-zone SLUG ZONE
//	enqueue queues [--top N] [--json]
package enqueueapp
