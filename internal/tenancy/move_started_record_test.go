package tenancy_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
)

// moveStartUnrecorded is a catalog whose audit log refuses the entry of a
// move's start (a catalog connection lost for that one statement, say).
type moveStartUnrecorded struct{ storage.Catalog }

func (c moveStartUnrecorded) AppendAudit(ctx context.Context, e storage.AuditEntry) error {
	if e.Action == string(tenancy.ActionMoveStarted) {
		return errors.New("injected: connection reset")
	}
	return c.Catalog.AppendAudit(ctx, e)
}

// TestMoveWithoutItsStartRecordedCopiesNothing: a tenant's destroy finds
// the copies of its schema a killed move left (kill -9 between the copy
// and the switch, or between the switch and the old schema's drop) by the
// databases its tenant.move_started entries name. A move that could not
// record its start must not copy the schema anywhere: killed after the
// copy, it would leave a whole copy, the tenant's customers in it, that no
// erasure reaches. Before, the failed entry was only logged and the move
// went on.
func TestMoveWithoutItsStartRecordedCopiesNothing(t *testing.T) {
	t.Parallel()
	b := setupTwoServers(t)
	acme := b.provision(t, "acme", "main")
	svc := tenancy.New(tenancy.Config{Catalog: moveStartUnrecorded{Catalog: b.catalog}, Enqueuer: b.enq, Documents: b.docs,
		SchemaPool: b.pool, Pools: b.pools, Dispatcher: b.d, Plans: fair.DefaultPlans()})
	opts := tenancy.WithBeforeSwitch(tenancy.MoveOptions{Grace: time.Millisecond}, func(ctx context.Context) error {
		// Killed here, the move would leave its copy on "second": a
		// destroy would look for it where the entries say.
		named := false
		for _, e := range b.audit(t, acme.ID) {
			var d struct {
				To string `json:"to"`
			}
			if e.Action == string(tenancy.ActionMoveStarted) && json.Unmarshal(e.Detail, &d) == nil && d.To == "second" {
				named = true
			}
		}
		if exists(t, ctx, b.second, acme.Schema) && !named {
			t.Errorf("the copy of %s is on second, but no %s entry names second: a destroy after a kill here leaves it",
				acme.Schema, tenancy.ActionMoveStarted)
		}
		return nil
	})
	_, err := svc.Move(b.ctx, acme.ID, "second", "test", opts)
	if err == nil {
		t.Error("a move that could not record its start succeeded")
	}
	if exists(t, b.ctx, b.second, acme.Schema) && err != nil {
		t.Error("a move that failed left its copy on the target")
	}
}
