package storagetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// testQueuePauses: a pause is recorded once however often it is set,
// cleared by SetQueuePaused false, refused for an unknown tenant, and goes
// with its deleted tenant.
func testQueuePauses(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	a := mustCreate(t, ctx, c, tenantctx.StatusActive)
	b := mustCreate(t, ctx, c, tenantctx.StatusSuspended)
	paused := func() []string {
		t.Helper()
		ids, err := c.PausedTenants(ctx)
		if err != nil {
			t.Fatalf("PausedTenants: %v", err)
		}
		return ids
	}
	if got := paused(); len(got) != 0 {
		t.Fatalf("paused before any pause = %v", got)
	}
	for _, id := range []string{b.ID, a.ID, a.ID} {
		if err := c.SetQueuePaused(ctx, id, true); err != nil {
			t.Fatalf("SetQueuePaused(%s, true): %v", id, err)
		}
	}
	want := []string{a.ID, b.ID}
	slices.Sort(want)
	if got := paused(); !slices.Equal(got, want) {
		t.Fatalf("paused = %v, want %v", got, want)
	}
	if err := c.SetQueuePaused(ctx, "tn_aaaaaaaaaaaaaaaaaaaaaaaaaa", true); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("pause of an unknown tenant: %v, want ErrNotFound", err)
	}
	for range 2 {
		if err := c.SetQueuePaused(ctx, a.ID, false); err != nil {
			t.Fatalf("SetQueuePaused(%s, false): %v", a.ID, err)
		}
	}
	if got := paused(); !slices.Equal(got, []string{b.ID}) {
		t.Fatalf("paused after clearing %s = %v, want [%s]", a.ID, got, b.ID)
	}
	if err := c.DeleteTenant(ctx, b.ID); err != nil {
		t.Fatalf("DeleteTenant: %v", err)
	}
	if got := paused(); len(got) != 0 {
		t.Fatalf("paused after deleting %s = %v, want none", b.ID, got)
	}
}

// testSyncQueuePauses: SyncQueuePaused records or clears the pause as its
// read says and returns it; a failed read writes nothing; an unknown
// tenant is ErrNotFound without a read. While one call's read runs, no
// other write of the tenant's record lands before it: a SyncQueuePaused
// or SetQueuePaused started meanwhile is saved after it (so the record
// ends as the later call says), and a deletion started meanwhile leaves
// no record behind.
func testSyncQueuePauses(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	a := mustCreate(t, ctx, c, tenantctx.StatusActive)
	recorded := func() bool {
		t.Helper()
		ids, err := c.PausedTenants(ctx)
		if err != nil {
			t.Fatalf("PausedTenants: %v", err)
		}
		return slices.Contains(ids, a.ID)
	}
	state := func(paused bool) func(context.Context) (bool, error) {
		return func(context.Context) (bool, error) { return paused, nil }
	}
	for _, want := range []bool{true, true, false, false, true} {
		got, err := c.SyncQueuePaused(ctx, a.ID, state(want))
		if err != nil || got != want {
			t.Fatalf("SyncQueuePaused(%v) = %v, %v", want, got, err)
		}
		if recorded() != want {
			t.Fatalf("after SyncQueuePaused(%v) the record says %v", want, !want)
		}
	}
	errRead := errors.New("injected: redis unreachable")
	if _, err := c.SyncQueuePaused(ctx, a.ID, func(context.Context) (bool, error) { return false, errRead }); !errors.Is(err, errRead) {
		t.Fatalf("SyncQueuePaused with a failing read: %v, want its error", err)
	}
	if !recorded() {
		t.Fatal("a failed read cleared the record")
	}
	read := false
	_, err := c.SyncQueuePaused(ctx, "tn_aaaaaaaaaaaaaaaaaaaaaaaaaa", func(context.Context) (bool, error) { read = true; return true, nil })
	if !errors.Is(err, storage.ErrNotFound) || read {
		t.Fatalf("SyncQueuePaused of an unknown tenant: %v (read called: %v), want ErrNotFound without a read", err, read)
	}

	// A write started while another call's read runs is saved after it.
	// (Unlocked, the later write would have landed first: give it time to,
	// then let the read return; the record must say what the later call
	// said.)
	later := map[string]func() error{
		"SyncQueuePaused": func() error { _, err := c.SyncQueuePaused(ctx, a.ID, state(false)); return err },
		"SetQueuePaused":  func() error { return c.SetQueuePaused(ctx, a.ID, false) },
	}
	for _, name := range []string{"SyncQueuePaused", "SetQueuePaused"} {
		if err := c.SetQueuePaused(ctx, a.ID, false); err != nil {
			t.Fatal(err)
		}
		first, second := syncHeld(ctx, c, a.ID, true), make(chan error, 1)
		go func() { second <- later[name]() }()
		waitALittle(second)
		first.release()
		if res := <-first.done; res.err != nil || !res.paused {
			t.Fatalf("the held SyncQueuePaused(true) = %v, %v", res.paused, res.err)
		}
		if err := <-second; err != nil {
			t.Fatalf("%s(false) started during another's read: %v", name, err)
		}
		if recorded() {
			t.Fatalf("%s(false) started during a SyncQueuePaused(true)'s read landed before its write: the record says paused", name)
		}
	}

	// A deletion started meanwhile leaves no record.
	b := mustCreate(t, ctx, c, tenantctx.StatusActive)
	first, deleted := syncHeld(ctx, c, b.ID, true), make(chan error, 1)
	go func() { deleted <- c.DeleteTenant(ctx, b.ID) }()
	waitALittle(deleted)
	first.release()
	if res := <-first.done; res.err != nil && !errors.Is(res.err, storage.ErrNotFound) {
		t.Fatalf("SyncQueuePaused(true) during a deletion: %v, want success or ErrNotFound", res.err)
	}
	if err := <-deleted; err != nil {
		t.Fatalf("DeleteTenant during a SyncQueuePaused: %v", err)
	}
	ids, err := c.PausedTenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(ids, b.ID) {
		t.Fatalf("a deleted tenant's pause is recorded: %v", ids)
	}
}

// heldSync is a SyncQueuePaused call whose read waits for release.
type heldSync struct {
	release func()
	done    chan syncResult
}

type syncResult struct {
	paused bool
	err    error
}

// syncHeld starts SyncQueuePaused(id) with a read that answers paused
// once released, and returns when the read has begun (or the call ended
// without it, which done then reports).
func syncHeld(ctx context.Context, c storage.Catalog, id string, paused bool) heldSync {
	entered, release := make(chan struct{}), make(chan struct{})
	h := heldSync{release: func() { close(release) }, done: make(chan syncResult, 1)}
	go func() {
		got, err := c.SyncQueuePaused(ctx, id, func(ctx context.Context) (bool, error) {
			close(entered)
			select {
			case <-release:
				return paused, nil
			case <-ctx.Done():
				return false, ctx.Err()
			}
		})
		h.done <- syncResult{got, err}
	}()
	select {
	case <-entered:
	case res := <-h.done:
		h.done <- res
	}
	return h
}

// waitALittle gives a call that should be waiting for a lock the time to
// end if it does not wait (it returns early when ch is ready, leaving the
// value there). A correct catalog passes whatever the time; a broken one
// is caught when its unlocked write lands within it.
func waitALittle(ch chan error) {
	select {
	case err := <-ch:
		ch <- err
	case <-time.After(200 * time.Millisecond):
	}
}
