package tenancy_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// errAnswerLost is what a caller sees when the connection breaks while
// the catalog's answer is on its way: the statement may have committed.
var errAnswerLost = errors.New("read tcp 127.0.0.1:5432: connection reset by peer")

// lossyPlacement is a catalog whose first lost SetPlacement answers are
// replaced by errAnswerLost: after the commit (commit true) or instead of
// it.
type lossyPlacement struct {
	storage.Catalog
	commit bool
	lose   *atomic.Int32 // answers still to lose
}

func (c lossyPlacement) SetPlacement(ctx context.Context, id, from, to string, generation int64) (tenantctx.Tenant, error) {
	if c.lose.Add(-1) < 0 {
		return c.Catalog.SetPlacement(ctx, id, from, to, generation)
	}
	if c.commit {
		if _, err := c.Catalog.SetPlacement(ctx, id, from, to, generation); err != nil {
			return tenantctx.Tenant{}, err
		}
	}
	return tenantctx.Tenant{}, errAnswerLost
}

// TestMoveWithTheSwitchAnswerLost: a move whose switch's answer was lost
// finds out from the catalog where the tenant is, instead of taking the
// error for a refusal and dropping the copy, which left a tenant placed on
// a database without its schema when the switch had been saved. Saved or
// not, the move completes; when the catalog never answers, the queue
// stays paused and both schemas are kept.
func TestMoveWithTheSwitchAnswerLost(t *testing.T) {
	t.Parallel()
	b := setupTwoServers(t)
	opts := tenancy.MoveOptions{Grace: time.Millisecond, DrainTimeout: 300 * time.Millisecond, Poll: 10 * time.Millisecond}
	for _, tc := range []struct {
		slug   string
		commit bool
		lose   int32
	}{
		{"saved", true, 1},     // committed, answer lost
		{"unsaved", false, 1},  // not committed, answer lost
		{"nobody", false, 1e6}, // the catalog never answers
	} {
		tn := b.provision(t, tc.slug, "main")
		lose := new(atomic.Int32)
		lose.Store(tc.lose)
		svc := tenancy.New(tenancy.Config{Catalog: lossyPlacement{b.catalog, tc.commit, lose}, Enqueuer: b.enq, Documents: b.docs,
			SchemaPool: b.pool, Pools: b.pools, Dispatcher: b.d, Plans: fair.DefaultPlans()})
		_, err := svc.Move(b.ctx, tn.ID, "second", "test", opts)
		now, lerr := b.catalog.TenantByID(b.ctx, tn.ID)
		if lerr != nil {
			t.Fatal(lerr)
		}
		onMain, onSecond := exists(t, b.ctx, b.pool, tn.Schema), exists(t, b.ctx, b.second, tn.Schema)
		q := inDefault(t, b.queue(t, tn.ID))
		if tc.slug == "nobody" {
			if err == nil || !strings.Contains(err.Error(), "unknown") || !strings.Contains(err.Error(), "queue stays paused") {
				t.Errorf("%s: Move = %v; want an error saying the outcome is unknown and the queue stays paused", tc.slug, err)
			}
			if !onMain || !onSecond || !q.Paused {
				t.Errorf("%s: schema on main %v, on second %v, queue paused %v; want both kept and paused", tc.slug, onMain, onSecond, q.Paused)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: Move = %v; want the move completed", tc.slug, err)
		}
		if now.Database != "second" || onMain || !onSecond || q.Paused {
			t.Errorf("%s: placed on %s, schema on main %v, on second %v, queue paused %v; want on second with its schema, the old one dropped, resumed",
				tc.slug, now.Database, onMain, onSecond, q.Paused)
		}
	}
}
