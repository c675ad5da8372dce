// Package fair admits tenants' tasks into asynq queues fairly, so that a
// tenant with a large backlog never makes a quiet tenant wait behind it.
//
// asynq serves each queue first in, first out: whatever is in a queue's
// pending list is run in order, fair or not. The dispatcher therefore keeps
// asynq's pending lists shallow (about Config.PendingTime of work per live
// worker slot, 1 to 50 tasks per slot by default) and keeps everything else in per-tenant backlogs in Redis, next to asynq's
// keys. Tasks move from the backlogs into asynq in a fair order:
//
//   - Start-time fair queueing over tenants: each tenant with admissible
//     work sits in a sorted set at its virtual time; the tenant with the
//     lowest one gets the next slot and its virtual time advances by the
//     task's cost divided by the tenant's weight. A tenant that becomes
//     ready again starts at the queue's current virtual time: idle time
//     earns no credit.
//   - A tenant with nothing else admitted, running or waiting gets its
//     task to the head of asynq's pending list (the end workers take
//     from): what asynq holds is other tenants' work, already charged, and
//     the quiet tenant has the lowest virtual time. A tenant with a
//     backlog queues at the tail, like everyone, also when its running cap
//     leaves it nothing in flight at the moment.
//   - Cost is worker time, not task count. A task is charged an estimate
//     when it is admitted (a moving average per tenant and type); when the
//     worker reports the attempt, the difference to the measured time is
//     charged or refunded, so a tenant whose tasks take ten times longer
//     gets a tenth of the tasks and the same worker time.
//   - A cap on a tenant's admitted, unfinished tasks (MaxRunning) and on
//     its backlog (MaxWaiting: past it an enqueue fails with
//     ErrBacklogFull and nothing is accepted), and one on all tenants'
//     backlogs of a queue together (Config.MaxWaitingTotal, ErrQueueFull),
//     which bounds the Redis memory they take.
//   - Holds: a suspended or paused tenant's backlog stays where it is, its
//     admitted tasks that asynq has not started go back to the front of
//     its backlog, and a task a worker dequeued anyway is parked until the
//     hold is released: the dispatcher keeps its message, the worker hands
//     it back with asynq.RevokeTask (neither retried nor archived, also on
//     its last attempt), and the release puts it back into the backlog
//     once asynq has let it go and its hand-back can no longer arrive
//     again (ParkRun; a task parked in asynq's retry set by an earlier
//     release is taken back from there, or from asynq's pending list, so
//     it is admitted under the caps). A parked task with
//     its message is recorded under keys (kept:) that the previous
//     release never reads: its scripts drop a parked record whose task
//     asynq no longer has, so during a rolling upgrade only processes of
//     this release release such a task. Drain discards a backlog. What
//     goes back into a backlog (held back, released, set aside by a drain
//     cut off between its steps) goes in enqueue-time order. Holds
//     recorded outside Redis (Config.Holds: the catalog's suspensions and
//     pauses) are put back when Redis lost them: a queue whose marker of
//     its holds is gone admits nothing until the first enqueue or
//     heartbeat that notices has put them back.
//
// Every step is one Lua script on the keys of one queue, so any number of
// enqueue services and workers dispatch at once without a leader, and a
// crash between steps loses or duplicates nothing: a task is either in a
// backlog or in asynq, moved in one atomic script. An admitted task is
// tracked with a lease; a worker killed before it reported the task does
// not hold its tenant's slot for longer than the lease, because the
// dispatcher then asks asynq's own state of the task. The dispatcher's keys
// carry the queue's hash tag ("fair:{default}:..." beside asynq's
// "asynq:{default}:..."), so a queue's scripts run on one Redis Cluster
// slot.
//
// Admission happens when a task is enqueued, when a worker reports
// finished tasks (Reporter batches those reports; a batch it sends again
// after an ambiguous Redis error is applied at most once, by its sequence
// number, so it cannot free the slot of a newer run of the same task id:
// a retry or a replacement admitted in between), and on each worker's
// heartbeat (Serve), which also tells the dispatcher how many worker slots
// are alive. The dispatcher writes admitted tasks into asynq's keys in
// asynq's own format (Message), so asynq's workers, inspector and
// dashboard see ordinary pending tasks.
//
// Each admission of a task id, and each retry GateRun lets run, is a run
// with a token of its own: admission puts it into the task's asynq headers
// (RunHeader), GateRun returns it, and the worker's Report names it
// (Report.Run), as does a park (ParkRun). A report or park ends the run it
// names only, so one delivered late, after the id was admitted again,
// cannot end the newer run and let its tenant run past MaxRunning. A late
// report of a run the lease check ended corrects that run's estimate:
// the tenant pays each run once.
package fair
