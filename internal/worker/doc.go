// Package worker holds the executors of the tasks whose contract package
// tasks defines: the middleware chain, the typed handler adapter, the
// handlers, the mux, the asynq server configuration, the asynq log adapter
// and the task metrics. cmd/worker runs them (through internal/workerapp);
// cmd/enqueue never imports this package, so the enqueue binary links no
// PDF renderer and no mailer.
//
// Every task passes, in this order:
//
//	DecodeEnvelope  grows the attempt's stack once (32 KiB); reads the task's type and tenant_id once, checks them, puts the Envelope into ctx
//	ReportCost      reports each attempt's worker time to the fair dispatcher (when it runs)
//	ForgetRecord    drops the tenant's record of a task that completed (run again from the dashboard)
//	Recover         turns a panic into a retried error, logged with its stack
//	Log             one line per attempt with task_id, task_type, tenant_id; the task's logger and attributes into ctx
//	Metrics         attempts and durations by type and outcome (no tenant label)
//	RefuseInvalid   archives unknown types and tenant tasks without a valid tenant_id
//	KeepLastAttempt puts a last attempt a not-ready wait met back into asynq's retry set instead of letting asynq archive it
//	DatabaseBreaker while main is down holds system tasks, tasks that need the catalog (tasks.Spec.NeedsCatalog) and tenant
//	                look-ups the tenant cache cannot answer; opens the breaker of the database an attempt could not reach
//	DatabaseUnavailable turns a failure to reach a database at all (no connection, SQLSTATE 08, 57P; 25006, a server taking no writes: pgreach.Unavailable) into a not-ready wait
//	ResolveTenant   looks the tenant up, applies the status policy, puts the tenant into ctx
//	                (an unknown or deleting tenant's task archived, its fair state forgotten once its erasure is recorded)
//	DatabaseGate    holds a task whose tenant database (main included) is down, without dialing it, until a probe reaches it
//	DatabaseSlots   bounds the tasks of one tenant database other than main (TENANT_DB_MAX_TASKS)
//	Handle[P]       decodes the payload into its type P, checks its fields, calls the handler
//
// NewServeMux builds exactly that chain over the registered task types
// (tasks.Types); package workertest runs a payload through it in tests. The
// invariants it keeps (fail closed, no tenant from anywhere but the
// payload, tasks of deleted tenants archived after one attempt) and the
// peer failure modes its tests guard are listed in docs/architecture.md.
package worker
