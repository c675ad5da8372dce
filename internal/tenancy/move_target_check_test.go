package tenancy_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestMoveToAnUnusableTargetIsRefusedUpFront: a move to a database whose
// URL's role may not create schemas there is refused before it changes
// anything, with the grant that fixes it (ErrMoveRefused wrapping
// placement.ErrMayNotCreateSchemas), instead of failing at the copy after
// the tenant's queue was paused; a target that does not answer fails as
// early (placement.ErrUnreachable). Either way the tenant stays where it
// is, active, its queue neither paused nor held by a move, and no audit
// entry is written.
func TestMoveToAnUnusableTargetIsRefusedUpFront(t *testing.T) {
	t.Parallel()
	pool, catalog, docs := catalogOn(t)
	b := servicesOn(t, pool, catalog, docs, map[string]string{
		"nocreate": testenv.PostgresAs(t, false),
		"down":     "postgres://app@127.0.0.1:1/invoicing?connect_timeout=5",
	}, 2)
	tn := b.provision(t, "acme", tenantctx.DefaultDatabase)
	before, err := b.catalog.AuditEntries(b.ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	opts := tenancy.MoveOptions{Grace: time.Millisecond, DrainTimeout: 300 * time.Millisecond, Poll: 10 * time.Millisecond}
	for _, tc := range []struct {
		to      string
		want    error
		refused bool
		says    string
	}{
		{"nocreate", placement.ErrMayNotCreateSchemas, true, "GRANT CREATE ON DATABASE"},
		{"down", placement.ErrUnreachable, false, "target database down"},
	} {
		_, err := b.svc.Move(b.ctx, tn.ID, tc.to, "test", opts)
		if !errors.Is(err, tc.want) || errors.Is(err, tenancy.ErrMoveRefused) != tc.refused || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Move to %s = %v; want %v (refused: %v) saying %q", tc.to, err, tc.want, tc.refused, tc.says)
		}
		now, err := b.catalog.TenantByID(b.ctx, tn.ID)
		if err != nil {
			t.Fatal(err)
		}
		if now.DatabaseName() != tenantctx.DefaultDatabase || now.Status != tenantctx.StatusActive || !exists(t, b.ctx, b.pool, tn.Schema) {
			t.Errorf("after the move to %s: tenant on %s, %s; want it on main, active, with its schema", tc.to, now.DatabaseName(), now.Status)
		}
		if q := inDefault(t, b.queue(t, tn.ID)); q.Paused || q.Moving {
			t.Errorf("after the move to %s: queue paused %v, moving %v; want neither", tc.to, q.Paused, q.Moving)
		}
		after, err := b.catalog.AuditEntries(b.ctx, tn.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(after) != len(before) {
			t.Errorf("after the move to %s: audit entries %+v; want none added", tc.to, after[len(before):])
		}
	}
}
