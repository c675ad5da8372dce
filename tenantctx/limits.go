package tenantctx

import (
	"errors"
	"fmt"
)

// MaxLimit bounds every field of Limits.
const MaxLimit = 1_000_000

// ErrInvalidLimits is wrapped by Limits.Validate's errors.
var ErrInvalidLimits = errors.New("invalid tenant limits")

// Limits override what a tenant's plan gives it in fair dispatch. A zero
// field means the plan's value.
type Limits struct {
	// Weight is the tenant's share of worker time relative to other
	// tenants with waiting work.
	Weight int `json:"weight,omitempty"`
	// MaxRunning caps the tenant's admitted, unfinished tasks per queue.
	MaxRunning int `json:"max_running,omitempty"`
	// MaxWaiting caps the tenant's backlog per queue; past it enqueues
	// are refused (HTTP 429).
	MaxWaiting int `json:"max_waiting,omitempty"`
}

// Validate checks that every field is between 0 and MaxLimit.
func (l Limits) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"weight", l.Weight}, {"max_running", l.MaxRunning}, {"max_waiting", l.MaxWaiting}} {
		if f.v < 0 || f.v > MaxLimit {
			return fmt.Errorf("%w: %s must be 0 (the plan's) to %d, got %d", ErrInvalidLimits, f.name, MaxLimit, f.v)
		}
	}
	return nil
}
