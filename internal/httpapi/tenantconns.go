package httpapi

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/semaphore"
)

// DefaultTenantDBConns is Options.TenantDBConns's default.
const DefaultTenantDBConns = 4

// tenantConns bounds the database units of work one tenant's requests run
// at once in this process (Options.TenantDBConns): a unit past the bound
// waits, first come first served, for one of the tenant's to end, never
// for another tenant's. Without it a tenant sending more requests at once
// than the pool has connections, each of them waiting for a lock on its
// tables until RequestTimeout, holds every connection, and every other
// tenant's request waits behind its queue and answers 503. Tenants without
// a unit in progress take no memory. It is safe for concurrent use; a nil
// tenantConns bounds nothing.
type tenantConns struct {
	max int64

	mu      sync.Mutex
	tenants map[string]*tenantSlots
}

// tenantSlots is one tenant's semaphore and the units holding or waiting
// for it.
type tenantSlots struct {
	sem  *semaphore.Weighted
	refs int
}

// newTenantConns returns a bound of perTenant units per tenant; nil (no
// bound) when perTenant is negative, DefaultTenantDBConns when it is 0.
func newTenantConns(perTenant int) *tenantConns {
	if perTenant < 0 {
		return nil
	}
	if perTenant == 0 {
		perTenant = DefaultTenantDBConns
	}
	return &tenantConns{max: int64(perTenant), tenants: make(map[string]*tenantSlots)}
}

// acquire waits until tenantID runs fewer units than the bound and returns
// the release of the one it starts, or ctx's error when ctx ends first.
func (c *tenantConns) acquire(ctx context.Context, tenantID string) (release func(), err error) {
	if c == nil {
		return func() {}, nil
	}
	c.mu.Lock()
	s, ok := c.tenants[tenantID]
	if !ok {
		s = &tenantSlots{sem: semaphore.NewWeighted(c.max)}
		c.tenants[tenantID] = s
	}
	s.refs++
	c.mu.Unlock()
	if err := s.sem.Acquire(ctx, 1); err != nil {
		c.forget(tenantID, s)
		return nil, fmt.Errorf("wait for one of the tenant's %d database units of work: %w", c.max, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.sem.Release(1)
			c.forget(tenantID, s)
		})
	}, nil
}

// forget drops one reference to s, and s itself with its last.
func (c *tenantConns) forget(tenantID string, s *tenantSlots) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.refs--; s.refs == 0 {
		delete(c.tenants, tenantID)
	}
}
