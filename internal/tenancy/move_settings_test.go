package tenancy_test

import (
	"slices"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/tenancy"
)

// TestMoveUnderStandardConformingStringsOff: a source database whose
// default standard_conforming_strings is off (ALTER DATABASE ... SET, as
// an operator keeps it for an old application that writes backslash
// escapes in plain literals) still moves its tenants. Before, every move
// failed at its lock with pgx's "simple protocol queries must be run with
// standard_conforming_strings=on", before anything was copied.
func TestMoveUnderStandardConformingStringsOff(t *testing.T) {
	t.Parallel()
	b := setupTwoServers(t)
	acme := b.provision(t, "acme", "main")
	// For the connections opened from now on: the move's own among them.
	setDatabaseDefault(t, b.ctx, b.pool, "standard_conforming_strings", "off")
	m, err := b.svc.Move(b.ctx, acme.ID, "second", "test", tenancy.MoveOptions{Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !m.OldSchemaDropped {
		t.Errorf("old schema dropped: %t, want dropped", m.OldSchemaDropped)
	}
	if got := b.numbers(t, acme.ID); !slices.Equal(got, []string{"acme-1", "acme-2"}) {
		t.Errorf("acme sees %v after the move", got)
	}
}
