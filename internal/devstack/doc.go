// Package devstack runs the whole system in one process for development:
// `go run ./cmd/worker -dev`.
//
// Run starts, in order:
//
//   - the listeners of the HTTP enqueue service (localhost:8080 by default)
//     and of the worker's health and metrics (a free loopback port), so a
//     busy port is reported before anything else starts;
//   - an in-process Redis (miniredis, with ClockTTL so TTLs and asynq's
//     unique locks expire by the wall clock);
//   - a throwaway PostgreSQL (package pgserver) in a pgserver-* directory
//     under the data directory, with a database named DatabaseName; or,
//     when Options.DatabaseURL (DATABASE_URL) is set, that database, of
//     which nothing is removed;
//   - one backend (package backend: pool, migrated catalog and cache,
//     documents, enqueuer, tenant lifecycle), shared by the worker
//     (workerapp, scheduler on, a sweep every minute) and the enqueue
//     service with a writable dashboard (enqueueapp);
//   - two demo tenants, acme and globex, provisioned with
//     tenancy.Service.Provision, the code path of POST /admin/tenants. The
//     worker's tenant:migrate task creates their schemas and activates
//     them; then each gets customers and invoices through the fixture
//     builder invoice.Create (sent and past due, paid, draft;
//     EUR, USD and JPY; names such as Müller GmbH, Zoë, Łódź, Ωmega). On a
//     database that already has them (a second run on one DATABASE_URL)
//     the tenants and their data are reused (a suspended one is resumed,
//     and so is a paused queue)
//     and each gets a new API key, since only hashes of keys are stored;
//     one left being deleted (its tenant:destroy was in the stopped run's
//     in-memory Redis) has its deletion finished, then is provisioned
//     again.
//
// Then it prints a banner to Options.Stdout: the API base
// (http://acme.localhost:8080), the dashboard URL (basic auth with any user
// name and the admin token as password), the admin token (random per run
// unless ADMIN_TOKEN is set), each tenant's API key, and curl commands that
// render, poll and download an invoice PDF. The banner's last line is
// ReadyPrefix followed by Info as JSON, for scripts and tests.
//
// PDFs go to <data dir>/documents, reminder e-mails to <data dir>/outbox as
// .eml files. When ctx ends (Main: SIGINT or SIGTERM, or under `go run` the
// end of the go command, which passes no signal on), Run stops the apps
// (running tasks get three seconds), Redis and PostgreSQL, and removes the
// throwaway database directory; a directory left by a run that was killed
// is removed by the next run, with the shared memory segment its
// PostgreSQL left.
package devstack
