package tenancy

import "context"

// WithBeforeSwitch returns o with a hook that runs after a move's copy was
// verified and before the catalog switches.
func WithBeforeSwitch(o MoveOptions, fn func(context.Context) error) MoveOptions {
	o.beforeSwitch = fn
	return o
}
