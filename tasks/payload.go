package tasks

// Payload is implemented by every task payload: one struct per task type,
// JSON-encoded with snake_case fields. Everything about a task type lives
// on its payload type.
type Payload interface {
	// TypeName returns the task's stable wire name (area:action). It is
	// never derived from the Go type: tasks already in Redis must keep
	// working across deploys, so a name is never changed.
	TypeName() string
	// Spec returns how this task is enqueued and what it does to its
	// tenant. It is computed fresh for every task (never a shared mutable
	// options value: see the peer failure modes in docs/architecture.md).
	Spec() Spec
	// Validate checks the payload's own fields (invoice ids, days, ticks,
	// targets). What all payloads share (a registered type, the tenant id
	// of a TenantPayload) is checked by the package's Validate before
	// enqueue, and by the worker's envelope middleware after dequeue.
	Validate() error
}

// TenantPayload is a payload that belongs to one tenant: its JSON object
// carries "tenant_id". Every task is a tenant task except the system tasks,
// which are simply payloads that do not implement TenantPayload.
type TenantPayload interface {
	Payload
	// Owner returns the id of the tenant the task belongs to.
	Owner() string
}
