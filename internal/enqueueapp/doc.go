// Package enqueueapp wires and runs the HTTP enqueue service (package
// httpapi) and its operator CLI.
//
// Run builds everything from configuration: the PostgreSQL pool
// (schema.NewPool), the catalog (storage.NewPostgres, which applies the
// catalog migrations, behind storage.NewCache), the Redis client, the
// document store (storage.NewFS), the asynq client and inspector, the one
// tasks.Enqueuer, and the HTTP server with bounded timeouts; it shuts down
// gracefully when ctx is cancelled (in-flight requests get SHUTDOWN_TIMEOUT). RunWith takes Options so that a dev mode
// can hand in connections and a listener it built itself.
//
// Configuration is internal/config's (config.FromEnv); the listen address
// defaults to config.DefaultEnqueueHTTPAddr. A busy port fails before any
// connection is made, with one line naming the address.
//
// Main is the command line of cmd/enqueue:
//
//	enqueue [serve] [--addr ADDR]
//	enqueue migrate --all [--wait] [--timeout 10m]
//	enqueue pdf --tenant SLUG --invoice ID
package enqueueapp
