package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/invoicing/tenantworker/tenantctx"
)

// registered is the one list of task types. The worker's mux, its
// known-types check, the metrics' label values and "is this a system
// task" are all derived from it; the worker has a test that every type
// here has a handler and every handler a type here.
var registered = []Payload{
	InvoicePDF{},
	InvoiceReminder{},
	InvoicesOverdue{},
	SweepOverdue{},
	SweepDocuments{},
	DocumentsPrune{},
	TenantMigrate{},
	TenantDestroy{},
}

// byName and byGoType index registered; building them panics on a
// duplicate wire name, so a wiring mistake fails at start-up.
var byName, byGoType = index(registered)

func index(ps []Payload) (map[string]Payload, map[reflect.Type]bool) {
	names := make(map[string]Payload, len(ps))
	types := make(map[reflect.Type]bool, len(ps))
	for _, p := range ps {
		if _, dup := names[p.TypeName()]; dup {
			panic("tasks: task type " + p.TypeName() + " registered twice")
		}
		names[p.TypeName()] = p
		types[reflect.TypeOf(p)] = true
	}
	return names, types
}

// Types returns the zero value of every registered payload type, in
// registration order.
func Types() []Payload { return slices.Clone(registered) }

// Lookup returns the zero value of the payload type registered under the
// wire name name.
func Lookup(name string) (Payload, bool) {
	p, ok := byName[name]
	return p, ok
}

// IsSystemType reports whether name is a registered task type that runs
// without a tenant (its payload is not a TenantPayload).
func IsSystemType(name string) bool {
	p, ok := byName[name]
	if !ok {
		return false
	}
	_, tenant := p.(TenantPayload)
	return !tenant
}

// Validate checks a payload before it is enqueued: a registered type (by
// Go type, so a pointer to a payload is refused), a valid tenant id for a
// TenantPayload, and the type's own Validate. Errors wrap
// ErrInvalidPayload.
func Validate(p Payload) error {
	if p == nil {
		return fmt.Errorf("%w: nil payload", ErrInvalidPayload)
	}
	if !byGoType[reflect.TypeOf(p)] {
		return fmt.Errorf("%w: unknown payload type %T", ErrInvalidPayload, p)
	}
	if tp, ok := p.(TenantPayload); ok {
		if err := tenantctx.ValidateID(tp.Owner()); err != nil {
			return fmt.Errorf("%w: %s: tenant_id: %w", ErrInvalidPayload, p.TypeName(), err)
		}
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidPayload, p.TypeName(), err)
	}
	return nil
}

// ownerField is the minimal decode of a payload: only its tenant_id.
type ownerField struct {
	TenantID json.RawMessage `json:"tenant_id"`
}

// OwnerOf returns the tenant id a task payload (the JSON object as queued)
// carries, after checking it, or an error saying what is wrong with it: not
// a JSON object, no tenant_id, not a string, empty, or not a valid tenant
// id. Only the tenant_id field is decoded.
func OwnerOf(payload []byte) (string, error) {
	var f ownerField
	if err := json.Unmarshal(payload, &f); err != nil {
		return "", fmt.Errorf("payload is not a JSON object: %w", err)
	}
	if len(f.TenantID) == 0 || string(f.TenantID) == "null" {
		return "", errors.New("payload has no tenant_id")
	}
	var id string
	if err := json.Unmarshal(f.TenantID, &id); err != nil {
		return "", fmt.Errorf("tenant_id is not a string: %.40s", f.TenantID)
	}
	if id == "" {
		return "", errors.New("tenant_id is empty")
	}
	if err := tenantctx.ValidateID(id); err != nil {
		return "", fmt.Errorf("bad tenant_id: %w", err)
	}
	return id, nil
}

// TenantIDStems returns the stems of tenantID's task ids, one per tenant
// task type ("invoice:pdf:tn_…"): a task id made by a payload's Spec
// belongs to the tenant when it is a stem or starts with one and ":", as
// ParseID reads it. fair.Config.TaskIDs takes it, so that a drain finds
// the tenant's tasks in asynq's retry and scheduled sets.
func TenantIDStems(tenantID string) []string {
	var out []string
	for _, p := range registered {
		if _, tenant := p.(TenantPayload); tenant {
			out = append(out, p.TypeName()+":"+tenantID)
		}
	}
	return out
}

// ParseID returns the task type and the tenant that a task id made by a
// payload's Spec names ("invoice:pdf:tn_…:42": invoice:pdf and tn_…;
// also with a suffix such as a dashboard re-run's), reading the id alone.
// tenantID is "" for a system task's id; ok is false for an id of another
// form (not one of the registered types', or without a valid tenant id).
func ParseID(id string) (typ, tenantID string, ok bool) {
	for _, p := range registered {
		name := p.TypeName()
		rest, found := strings.CutPrefix(id, name+":")
		if !found {
			continue
		}
		if _, tenant := p.(TenantPayload); !tenant {
			return name, "", true
		}
		tenantID, _, _ = strings.Cut(rest, ":")
		if tenantctx.ValidateID(tenantID) != nil {
			return "", "", false
		}
		return name, tenantID, true
	}
	return "", "", false
}
