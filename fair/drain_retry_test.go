package fair_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
)

// TestDrainScansRetryAndScheduledSetsInBatches: a drain with
// Config.TaskIDs discards the tenant's tasks from asynq's retry and
// scheduled sets, and its retries due in asynq's pending list, hash and
// member together, over sets and lists larger than one script call's scan
// (several calls), and leaves every other task: another
// tenant's whose id merely starts like the tenant's, one of the tenant's
// whose hash says asynq holds it in another state, and the tenant's task
// with an id that is its stem alone (tenant:destroy's form) goes too.
func TestDrainScansRetryAndScheduledSetsInBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupConfig(t, fair.Config{MinPending: 4, TaskIDs: func(tenant string) []string {
		return []string{"invoice:pdf:" + tenant, "tenant:destroy:" + tenant}
	}})
	A := "asynq:{" + q + "}:"
	add := func(set, id, state string) {
		t.Helper()
		if err := b.rdb.HSet(ctx, A+"t:"+id, "state", state, "msg", "x").Err(); err != nil {
			t.Fatal(err)
		}
		if err := b.rdb.ZAdd(ctx, A+set, redis.Z{Score: 1, Member: id}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	const mine, others = 1500, 1500
	for i := range mine {
		add("retry", fmt.Sprintf("invoice:pdf:acme:%d", i), "retry")
	}
	for i := range others {
		add("retry", fmt.Sprintf("invoice:pdf:acme-2:%d", i), "retry") // another tenant
	}
	add("retry", "tenant:destroy:acme", "retry")
	add("scheduled", "invoice:pdf:acme:s1", "scheduled")
	add("scheduled", "invoice:pdf:acmex:s1", "scheduled")
	add("retry", "invoice:pdf:acme:odd", "pending") // asynq holds it elsewhere: not ours to delete
	// Retries asynq's forwarder moved into the pending list, among more
	// of another tenant's tasks than one call looks at.
	for i := range 1200 {
		id := fmt.Sprintf("invoice:pdf:acme-2:p%d", i)
		if i%100 == 0 {
			id = fmt.Sprintf("invoice:pdf:acme:p%d", i)
		}
		b.rdb.HSet(ctx, A+"t:"+id, "state", "pending", "msg", "x")
		b.rdb.LPush(ctx, A+"pending", id)
	}

	n, err := b.d.Drain(ctx, "acme", q)
	if err != nil {
		t.Fatal(err)
	}
	if n.Retrying != mine+1+12 || n.Scheduled != 1 || n.Total() != mine+14 {
		t.Fatalf("Drain = %+v; want %d retrying and 1 scheduled", n, mine+13)
	}
	if left := b.rdb.LLen(ctx, A+"pending").Val(); left != 1200-12 {
		t.Errorf("pending list holds %d, want the other tenant's %d", left, 1200-12)
	}
	if b.rdb.Exists(ctx, A+"t:invoice:pdf:acme:p1100").Val() != 0 {
		t.Error("the drained tenant's due retry is left in asynq")
	}
	if left := b.rdb.ZCard(ctx, A+"retry").Val(); left != others+1 {
		t.Errorf("retry set holds %d, want the other tenant's %d and the task asynq holds elsewhere", left, others)
	}
	if b.rdb.ZScore(ctx, A+"scheduled", "invoice:pdf:acmex:s1").Err() != nil {
		t.Error("the other tenant's scheduled task was deleted")
	}
	for _, id := range []string{"invoice:pdf:acme:0", "invoice:pdf:acme:1499", "tenant:destroy:acme", "invoice:pdf:acme:s1"} {
		if b.rdb.Exists(ctx, A+"t:"+id).Val() != 0 {
			t.Errorf("asynq's hash of drained task %s is left", id)
		}
	}
	for _, id := range []string{"invoice:pdf:acme-2:0", "invoice:pdf:acme:odd"} {
		if b.rdb.Exists(ctx, A+"t:"+id).Val() != 1 {
			t.Errorf("task %s, not the drained tenant's retry, was deleted", id)
		}
	}
}
