package worker

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/tenantctx"
)

// DefaultDatabaseSlotWait is how long a tenant task waits for one of its
// database's slots (DatabaseSlots) before it is retried later instead.
const DefaultDatabaseSlotWait = 5 * time.Second

// ErrDatabaseBusy wraps ErrTenantNotReady for a task whose tenant database
// (not "main") already had as many of this worker's tasks running as it
// may (TENANT_DB_MAX_TASKS) for DefaultDatabaseSlotWait: it is retried
// later without counting as a failure, and its worker slot goes to other
// work meanwhile. On a task's last allowed attempt KeepLastAttempt keeps
// it for a later retry (asynq would archive it unrun).
var ErrDatabaseBusy = fmt.Errorf("tenant database busy: %w", ErrTenantNotReady)

// DatabaseSlots bounds how many tasks of the tenants of one tenant
// database other than "main" this worker runs at once, to limit per
// database. Without it a database that answers nothing (a stopped VM, a
// hung server) or very slowly (tables locked) lets its tenants' tasks take
// every worker slot, each waiting up to its deadline, while the tenants
// of the other databases wait. A task over the bound waits up to wait for
// a slot (a busy but healthy database frees one within moments), then
// fails with ErrDatabaseBusy (retried later, not a failure); when none of
// the database's slots was taken or given back for wait already (it is
// stuck), it fails at once, so that the slot it would hold serves other work. Tasks
// of "main" (which holds the catalog: without it no task runs anyway) and
// system tasks are not bounded; limit < 1 bounds nothing. It runs after
// ResolveTenant, which puts the tenant in ctx.
func DatabaseSlots(limit int, wait time.Duration) asynq.MiddlewareFunc {
	return databaseSlotsOn(limit, wait, sinceStart)
}

// processStart is what sinceStart measures from: time.Now keeps the
// monotonic clock's reading, which a step of the wall clock (NTP) does not
// move.
var processStart = time.Now()

// sinceStart is the monotonic clock databaseSlots measure on.
func sinceStart() time.Duration { return time.Since(processStart) }

// databaseSlotsOn is DatabaseSlots measuring on the monotonic clock
// elapsed (sinceStart; a test's fake).
func databaseSlotsOn(limit int, wait time.Duration, elapsed func() time.Duration) asynq.MiddlewareFunc {
	if wait <= 0 {
		wait = DefaultDatabaseSlotWait
	}
	var mu sync.Mutex
	slots := map[string]*databaseSlots{}
	slotsOf := func(name string) *databaseSlots {
		mu.Lock()
		defer mu.Unlock()
		s, ok := slots[name]
		if !ok {
			s = &databaseSlots{free: make(chan struct{}, limit), elapsed: elapsed}
			slots[name] = s
		}
		return s
	}
	return func(next asynq.Handler) asynq.Handler {
		if limit < 1 {
			return next
		}
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			tenant, ok := tenantctx.FromContext(ctx)
			name := tenant.DatabaseName()
			if !ok || name == "" || name == tenantctx.DefaultDatabase {
				return next.ProcessTask(ctx, t)
			}
			s := slotsOf(name)
			if !s.take(ctx, wait) {
				if err := ctx.Err(); err != nil {
					return err
				}
				return fmt.Errorf("tenant %s: %d tasks of database %s are running (TENANT_DB_MAX_TASKS): %w", tenant.ID, limit, name, ErrDatabaseBusy)
			}
			defer s.give()
			return next.ProcessTask(ctx, t)
		})
	}
}

// databaseSlots are one database's slots (DatabaseSlots): a token in free
// per running task, and when one was last taken or given back.
type databaseSlots struct {
	free chan struct{}
	// given is when a slot was last taken or given back, on elapsed (in
	// nanoseconds). A take counts too: a database whose slots were just
	// taken answers, even when another of its tasks (a migration, a large
	// render) has held a slot for longer than the wait.
	given atomic.Int64
	// elapsed reads the monotonic clock given is on: a wall clock's
	// reading (UnixNano) stepped forward by NTP made a database whose
	// slots were just taken look stuck, its tasks turned away at once.
	elapsed func() time.Duration
}

// take takes a slot, waiting up to wait for one unless none was taken or
// given back for wait already; it reports whether it took one.
func (s *databaseSlots) take(ctx context.Context, wait time.Duration) bool {
	select {
	case s.free <- struct{}{}:
		s.given.Store(int64(s.elapsed()))
		return true
	default:
	}
	if s.elapsed()-time.Duration(s.given.Load()) >= wait {
		return false // stuck: no slot taken or given back for wait
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case s.free <- struct{}{}:
		s.given.Store(int64(s.elapsed()))
		return true
	case <-timer.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// give gives a slot back.
func (s *databaseSlots) give() {
	s.given.Store(int64(s.elapsed()))
	<-s.free
}
