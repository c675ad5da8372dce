package tenancy_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
)

// TestMoveWhoseSourceTransactionIsLostInTheGraceKeepsWrittenOldSchema:
// the copy's source transaction is lost after the switch, in the grace
// period (its backend terminated), and a write that waited for the copy
// commits into the old schema, which nothing reads any more. The move
// keeps the old schema and names the tables written there
// (Moved.OldSchemaWritten, the audit entry), so that the operator copies
// those rows to the new database before dropping it. Before, the move only
// logged an error saying to drop the old schema by hand, with the write in
// it.
func TestMoveWhoseSourceTransactionIsLostInTheGraceKeepsWrittenOldSchema(t *testing.T) {
	t.Parallel()
	b := setupTwoServers(t)
	acme := b.provision(t, "acme", "main")
	opts := tenancy.MoveOptions{Grace: time.Millisecond, Progress: func(step string) {
		if !strings.HasPrefix(step, "switched to") {
			return
		}
		// The application, still writing to the old database.
		wrote := writeWaitingForTheCopy(t, b.ctx, b)
		terminateCopySource(t, b.ctx, b)
		if err := <-wrote; err != nil {
			t.Fatalf("the write that waited for the copy, once its lock went: %v", err)
		}
	}}
	m, err := b.svc.Move(b.ctx, acme.ID, "second", "test", opts)
	if err != nil {
		t.Fatalf("move: %v", err)
	}
	if m.OldSchemaDropped || !slices.Equal(m.OldSchemaWritten, []string{"customers"}) {
		t.Errorf("moved: old schema dropped %v, written %v; want kept, customers written", m.OldSchemaDropped, m.OldSchemaWritten)
	}
	var n int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM tenant_acme.customers WHERE name = 'late'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("the customer written in the old schema after the switch: %d rows, %v; want it kept there", n, err)
	}
	entries := b.audit(t, acme.ID)
	i := slices.IndexFunc(entries, func(e storage.AuditEntry) bool { return e.Action == string(tenancy.ActionMoved) })
	if i < 0 {
		t.Fatalf("no %s entry: %v", tenancy.ActionMoved, actions(entries))
	}
	var detail struct {
		Written []string `json:"old_schema_written"`
	}
	if err := json.Unmarshal(entries[i].Detail, &detail); err != nil || !slices.Equal(detail.Written, []string{"customers"}) {
		t.Errorf("%s entry %s (%v): want old_schema_written [customers]", tenancy.ActionMoved, entries[i].Detail, err)
	}
}

// TestMoveWhoseSourceTransactionIsLostInTheGraceDropsUnwrittenOldSchema:
// the copy's source transaction is lost in the grace period, but nothing
// was written to the old schema since the copy: the move locks its tables
// again, finds them as copied, and drops it. Before, it kept it with an
// error saying to drop it by hand.
func TestMoveWhoseSourceTransactionIsLostInTheGraceDropsUnwrittenOldSchema(t *testing.T) {
	t.Parallel()
	b := setupTwoServers(t)
	acme := b.provision(t, "acme", "main")
	opts := tenancy.MoveOptions{Grace: time.Millisecond, Progress: func(step string) {
		if strings.HasPrefix(step, "switched to") {
			terminateCopySource(t, b.ctx, b)
		}
	}}
	m, err := b.svc.Move(b.ctx, acme.ID, "second", "test", opts)
	if err != nil {
		t.Fatalf("move: %v", err)
	}
	if !m.OldSchemaDropped || len(m.OldSchemaWritten) > 0 {
		t.Errorf("moved: old schema dropped %v, written %v; want dropped", m.OldSchemaDropped, m.OldSchemaWritten)
	}
	if exists(t, b.ctx, b.pool, acme.Schema) {
		t.Error("the old schema is still in main")
	}
	if got := b.numbers(t, acme.ID); !slices.Equal(got, []string{"acme-1", "acme-2"}) {
		t.Errorf("acme sees %v after the move", got)
	}
}
