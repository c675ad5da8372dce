// Command bench measures the whole tenant worker beside bare-asynq
// baselines taken in the same run on the same machine, and prints one JSON
// document (stdout, or -json FILE) and an aligned table (stderr).
//
//	go run ./integration/bench -quick            # about 3.5 minutes on 2 CPUs
//	go run ./integration/bench                   # about 40 minutes, the issues' sizes
//	go run ./integration/bench -scenarios middleware,lookup -json out.json
//
// It starts its own redis-server (no RDB snapshots, no AOF) and a
// throwaway PostgreSQL (internal/pgserver) on loopback, or uses REDIS_URL
// and DATABASE_URL when they are set (REDIS_URL may be a
// redis-cluster:// URL; the Redis database must be empty: it is flushed,
// on every master of a cluster, between scenarios; Redis command and
// memory counters are summed over the masters; on the PostgreSQL server it creates, and
// drops at the end, databases named bench_*). Everything it starts is
// stopped when it ends, also on Ctrl-C or SIGTERM, and, under `go run`,
// once the go command ends, however it ends: go run passes no signal on
// (golang/go#40467), so a script's `kill $!` of `go run ./integration/bench &`
// signals the go command alone.
//
// Scenarios (each with a baseline measured in the same run, and the ratio):
//
//  1. middleware: tasks/s draining pre-enqueued tasks through the tenant
//     middleware (Recover -> Log -> Metrics -> Tenant over the cached
//     Postgres catalog) with a schema-pinned SELECT 1, vs an asynq server
//     with a no-op handler and the same configuration; the CPU time the
//     bench (which runs the server), redis-server and PostgreSQL spent
//     per task.
//  2. lookup: p50/p99 of tenant lookups answered by the in-process layer,
//     by Redis (local layer off), and by the Postgres catalog, beside a
//     bare Redis GET and a bare SELECT 1.
//  3. pdf: invoice:pdf end to end through the real cmd/worker binary:
//     tasks/s of a burst, and p50/p99 from enqueue to the task's "task
//     finished" log line at half that rate; the worker's peak RSS (VmHWM).
//     Each burst's note gives the CPU per task of the worker, Redis,
//     PostgreSQL and the bench, and how the whole machine's CPUs spent the
//     burst (/proc/stat: user, kernel, idle, iowait and steal, the
//     kernel's threads and the idle time no process counts included).
//  4. enqueue: POST /v1/invoices/{id}/pdf (single, and bulk of 100 ids;
//     -bulk-batch sets the ids a bulk request)
//     against the real cmd/enqueue binary from 64 clients vs
//     asynq.Client.Enqueue from 64 goroutines, in rounds that measure both
//     back to back; the targets are judged on the median of the rounds'
//     ratios.
//  5. migrate: provisioning tenants (catalog rows + tenant:migrate tasks)
//     until every one is active, through the real worker; then a second,
//     no-op run of `migrate --all` (tenancy.Service.MigrateAll).
//  6. sweep: one sweep:overdue over tenants with 20 overdue invoices each:
//     seconds until every reminder task is enqueued, and until every
//     reminder is written by the file mailer.
//  7. fairness: fair dispatch vs the plain path (a quiet tenant behind a
//     noisy backlog, throughput cost, shares, idle pickup, dispatch
//     scaling).
//  8. scaleout: tenants provisioned and migrated through the real worker
//     over two PostgreSQL servers (a second throwaway server registered
//     as TENANT_DATABASES "second") vs all on one, with the tenants each
//     database got; no-op tasks enqueued and run on a 6-node Redis
//     Cluster (3 masters), with one queue per class and with
//     QUEUE_SHARDS=3, vs one redis-server.
//  9. python: the Celery + reportlab worker issue 14's targets are
//     multiples of (python/pdfworker.py, run with Debian's
//     /usr/bin/python3: prefork pools of one and of four processes per
//     CPU, or -celery-concurrency's, task_acks_late),
//     doing a first render's job over the core tenants' invoices with the
//     PDF standard fonts and with cmd/worker's TrueType fonts: PDFs/s of a
//     burst of -pdf-burst tasks per kind enqueued with Celery's client,
//     CPU per task by process, and, when the pdf scenario ran in the
//     same run, its rates over the faster pool's against the 3x
//     and 2x.
//
// The command is a measuring tool, not part of any shipped binary.
package main
