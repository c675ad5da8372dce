package tenantctx

// Activity is a kind of work done for a tenant, as the status policy
// (Status.Decide) tells them apart.
type Activity int

// The activities. The zero value is Work, the ordinary case: a new kind of
// task is judged like invoice work unless it says otherwise.
const (
	// Work is ordinary work: invoice tasks, overdue sweeps, API requests,
	// new API keys.
	Work Activity = iota
	// Migration creates or upgrades the tenant's schema (tenant:migrate).
	Migration
	// Destruction erases the tenant (tenant:destroy).
	Destruction
)

// String returns the activity's name, for logs and errors.
func (a Activity) String() string {
	switch a {
	case Work:
		return "work"
	case Migration:
		return "migration"
	case Destruction:
		return "destruction"
	}
	return "unknown activity"
}

// Verdict is what the status policy says about an activity.
type Verdict int

// The verdicts. The zero value is Refuse: whatever the policy does not
// name is refused (fail closed).
const (
	// Refuse: the activity never runs for the tenant in this status (a
	// task is archived, a request answered 404).
	Refuse Verdict = iota
	// Wait: the activity runs later, once the status changes (a task is
	// retried without counting a failure).
	Wait
	// Run: the activity runs now.
	Run
)

// String returns the verdict's name, for logs and errors.
func (v Verdict) String() string {
	switch v {
	case Refuse:
		return "refuse"
	case Wait:
		return "wait"
	case Run:
		return "run"
	}
	return "unknown verdict"
}

// policy is the one table of what each status allows, indexed by Activity.
//
//	status        work    migration  destruction
//	provisioning  wait    run        wait
//	active        run     run        wait
//	suspended     wait    run        wait
//	deleting      refuse  refuse     run
//
// A suspended tenant's schema is still migrated, so that it resumes on the
// current version and "migrate --all --wait" finishes. A live tenant is
// never destroyed: destruction waits until it is marked deleting.
var policy = map[Status][3]Verdict{
	StatusProvisioning: {Work: Wait, Migration: Run, Destruction: Wait},
	StatusActive:       {Work: Run, Migration: Run, Destruction: Wait},
	StatusSuspended:    {Work: Wait, Migration: Run, Destruction: Wait},
	StatusDeleting:     {Work: Refuse, Migration: Refuse, Destruction: Run},
}

// Decide is the status policy: whether activity a runs, waits or is
// refused for a tenant in status s. An unknown status or activity is
// refused. The worker's tenant resolution, the HTTP API, the CLI, the
// tenant lifecycle and the overdue sweep all decide through here.
func (s Status) Decide(a Activity) Verdict {
	row, ok := policy[s]
	if !ok || a < 0 || int(a) >= len(row) {
		return Refuse
	}
	return row[a]
}
