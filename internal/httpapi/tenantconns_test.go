package httpapi

import (
	"context"
	"errors"
	"testing"
)

// TestTenantConnsBoundsEachTenantAlone: a tenant at its bound waits (here
// until its context ends) while another tenant starts at once, and
// tenants without units in progress are forgotten.
func TestTenantConnsBoundsEachTenantAlone(t *testing.T) {
	t.Parallel()
	c := newTenantConns(2)
	ctx := t.Context()
	var releases []func()
	for range 2 {
		r, err := c.acquire(ctx, "tn_noisy")
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.acquire(ended, "tn_noisy"); !errors.Is(err, context.Canceled) {
		t.Fatalf("third unit of a tenant at its bound: %v, want it to wait until its context ends", err)
	}
	quiet, err := c.acquire(ended, "tn_quiet")
	if err == nil {
		quiet() // an ended context may still win a free slot
	}
	quiet, err = c.acquire(ctx, "tn_quiet")
	if err != nil {
		t.Fatalf("another tenant: %v", err)
	}
	quiet()
	releases[0]()
	releases[0]() // twice is once
	r, err := c.acquire(ctx, "tn_noisy")
	if err != nil {
		t.Fatal(err)
	}
	r()
	releases[1]()
	if n := len(c.tenants); n != 0 {
		t.Fatalf("%d tenants remembered with nothing in progress", n)
	}
	if newTenantConns(-1) != nil || newTenantConns(0).max != DefaultTenantDBConns {
		t.Fatal("negative must turn the bound off, 0 must be the default")
	}
}
