package tenancy_test

import (
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
)

// TestPauseRedisRefusesLeavesNoRecord: a pause whose hold Redis refuses
// (at maxmemory with noeviction: the admin route's 503, "nothing of the
// refused request is kept") leaves no record of it in the catalog either.
// The record, written before the hold, stayed: the tenant was not paused,
// yet after Redis lost its data its work was held, as if the refused
// pause had been made.
func TestPauseRedisRefusesLeavesNoRecord(t *testing.T) {
	t.Parallel()
	b := setupLoss(t)
	tn := b.active(t, "pause-refused")
	b.beat(t)
	if err := b.rdb.ConfigSet(b.ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	_, err := b.svc.PauseQueue(b.ctx, tn.ID, tenancy.ActorAdmin)
	if err := b.rdb.ConfigSet(b.ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err == nil {
		t.Fatal("PauseQueue with Redis at maxmemory succeeded")
	}
	checkRecordFollowsRedis(t, b, tn.ID, false)
	if ids, paused := afterLoss(t, b, tn); len(ids) != 2 || paused {
		t.Fatalf("after the refused pause and a loss of Redis's data: in asynq %v, paused %v; want both renders admitted, not paused", ids, paused)
	}
}
