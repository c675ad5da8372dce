package fair_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestEveryScriptOnCluster runs every dispatcher step (each one Lua script)
// on a real Redis Cluster of three masters, for three queues at once.
// Redis Cluster refuses a script that touches a key outside the slot of
// its declared keys ("Script attempted to access a non local key" or "...
// keys that do not hash to the same slot"), so this fails if any script
// builds a key without the queue's hash tag.
func TestEveryScriptOnCluster(t *testing.T) {
	t.Parallel()
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{})
	rdb := c.ClientT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	queues := []string{"critical", "default", "low"}
	masters := map[string]bool{}
	for _, queue := range queues {
		m, slot, err := c.MasterOf(ctx, "asynq:{"+queue+"}:pending")
		if err != nil {
			t.Fatal(err)
		}
		masters[m.Addr()] = true
		t.Logf("queue %s: slot %d on master %s", queue, slot, m.Addr())
	}
	if len(masters) < 2 {
		t.Errorf("the three queues share one master: the test would not cross masters")
	}
	// The control: the cluster refuses a script that builds a key of
	// another slot, so a script of the dispatcher that did would fail here.
	bad := redis.NewScript(`return redis.call('GET', ARGV[1])`)
	if err := bad.Run(ctx, rdb, []string{"fair:{default}:vt"}, "fair:{low}:vt").Err(); err == nil || errors.Is(err, redis.Nil) {
		t.Fatalf("a script reading a key of another slot: %v, want the cluster to refuse it", err)
	} else {
		t.Logf("control: a cross-slot key inside a script is refused: %v", err)
	}
	// The admissions' announcements (a PUBLISH inside the script, which
	// a refusal would not fail: redis.pcall) reach a subscriber on the
	// cluster, for every queue.
	channels := make([]string, len(queues))
	for i, queue := range queues {
		channels[i] = fair.WakeChannel(queue)
	}
	ps := rdb.Subscribe(ctx, channels...)
	t.Cleanup(func() { _ = ps.Close() })
	for range channels {
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatalf("subscribe to the wake channels: %v", err)
		}
	}
	announced := make(map[string]bool)
	announcements := make(chan string, 1000)
	go func() {
		for m := range ps.Channel() {
			announcements <- m.Channel
		}
	}()
	clock := testenv.NewManualClock(time.Unix(1_700_000_000, 0))
	const tenant, other = "tn_cluster_a", "tn_cluster_b"
	// Holds: the marker of each queue's holds and the script that puts
	// them back run on the queue's slot too (a fresh Redis: the first
	// enqueue in a queue puts back its holds, none).
	d := fair.New(rdb, fair.Config{MinPending: 2, PendingPerSlot: 1, PendingTime: time.Microsecond, Now: clock.Now,
		Holds: func(context.Context) ([]fair.Holding, error) { return nil, nil },
		TaskIDs: func(tn string) []string {
			stems := make([]string, len(queues))
			for i, queue := range queues {
				stems[i] = "invoice:pdf:" + queue + ":" + tn
			}
			return stems
		}})
	pol := fair.Policy{Weight: 1, MaxRunning: 3, MaxWaiting: 100}
	for _, queue := range queues {
		t.Run(queue, func(t *testing.T) {
			msg := func(tn string, n int) fair.Task {
				payload, _ := json.Marshal(map[string]any{"tenant_id": tn, "invoice_id": n})
				return fair.Task{Message: fair.Message{
					ID: fmt.Sprintf("invoice:pdf:%s:%s:%d", queue, tn, n), Type: "invoice:pdf", Queue: queue,
					Payload: payload, Retry: 3, Timeout: time.Minute, Retention: time.Hour,
				}}
			}
			var batch, batchB []fair.Task
			for i := range 10 {
				batch = append(batch, msg(tenant, i))
				batchB = append(batchB, msg(other, i))
			}
			must := func(what string, err error) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s on queue %s: %v", what, queue, err)
				}
			}
			_, err := d.Enqueue(ctx, tenant, pol, batch)
			must("Enqueue", err)
			res, err := d.Enqueue(ctx, other, pol, batchB)
			must("Enqueue", err)
			if len(res) != 10 {
				t.Fatalf("Enqueue returned %d results", len(res))
			}
			// A repeat is deduped.
			res, err = d.Enqueue(ctx, tenant, pol, batch[:1])
			must("Enqueue repeat", err)
			if !res[0].Existing {
				t.Errorf("repeat enqueue: %+v, want Existing", res[0])
			}
			must("Heartbeat", d.Heartbeat(ctx, queue, "w1", 4, time.Minute))
			_, err = d.Pump(ctx, queue)
			must("Pump", err)
			pending := "asynq:{" + queue + "}:pending"
			active := "asynq:{" + queue + "}:active"
			id, err := rdb.LMove(ctx, pending, active, "RIGHT", "LEFT").Result()
			must("dequeue", err)
			must("mark active", rdb.HSet(ctx, "asynq:{"+queue+"}:t:"+id, "state", "active").Err())
			_, _, err = d.Waiting(ctx, batch[9].Message.ID, queue)
			must("Waiting", err)
			_, _, err = d.Top(ctx, queue, 5)
			must("Top", err)
			st, err := d.Stats(ctx, tenant, queue)
			must("Stats", err)
			if len(st) != 1 || st[0].Waiting+st[0].Admitted != 10 {
				t.Errorf("Stats = %+v, want 10 tasks waiting or admitted", st)
			}
			// Hold moves admitted tasks back; a dequeued one is parked.
			_, err = d.Hold(ctx, tenant, fair.Suspended, queue)
			must("Hold", err)
			tn := tenantOfCluster(id)
			_, err = d.Park(ctx, queue, id, tn, "invoice:pdf")
			must("Park", err)
			_, err = d.Release(ctx, tenant, fair.Suspended, queue)
			must("Release", err)
			// Complete the other tenant's tasks as a worker would.
			for range 20 {
				id, err := rdb.LMove(ctx, pending, active, "RIGHT", "LEFT").Result()
				if errors.Is(err, redis.Nil) {
					break
				}
				must("dequeue", err)
				must("done", rdb.LRem(ctx, active, 0, id).Err())
				must("done", rdb.Del(ctx, "asynq:{"+queue+"}:t:"+id).Err())
				must("Complete", d.Complete(ctx, queue, []fair.Report{{Queue: queue, TaskID: id, TenantID: tenantOfCluster(id), Type: "invoice:pdf", Cost: time.Millisecond}}))
			}
			// A Reporter's batch also records its sequence number in the
			// queue's slot.
			var logs strings.Builder
			rep := d.NewReporter(slog.New(slog.NewTextHandler(&logs, nil)))
			rep.Report(fair.Report{Queue: queue, TaskID: id, TenantID: tn, Type: "invoice:pdf", Cost: time.Millisecond})
			rep.Close(ctx)
			if strings.Contains(logs.String(), "send completion reports") {
				t.Errorf("Reporter on queue %s: %s", queue, logs.String())
			}
			// The lease check asks asynq's state of vanished tasks.
			clock.Advance(2 * fair.DefaultLease)
			_, err = d.Pump(ctx, queue)
			must("Pump after lease", err)
			// A retry of the drained tenant in asynq's retry set, one due
			// in its pending list: the drain's scans delete them on the
			// queue's slot.
			A := "asynq:{" + queue + "}:"
			for i, set := range []string{"retry", "pending"} {
				id := fmt.Sprintf("invoice:pdf:%s:%s:r%d", queue, other, i)
				must("HSet", rdb.HSet(ctx, A+"t:"+id, "state", set, "msg", "x").Err())
				if set == "retry" {
					must("ZAdd", rdb.ZAdd(ctx, A+"retry", redis.Z{Score: 1, Member: id}).Err())
				} else {
					must("LPush", rdb.LPush(ctx, A+"pending", id).Err())
				}
			}
			dr, err := d.Drain(ctx, other, queue)
			must("Drain", err)
			t.Logf("queue %s: drained %+v", queue, dr)
			if dr.Retrying != 2 {
				t.Errorf("Drain on queue %s = %+v, want the 2 retries", queue, dr)
			}
			must("Forget", d.Forget(ctx, other, queue))
		})
	}
	// The metrics collector reads every queue.
	col := d.NewCollector(queues, 5, slog.New(slog.DiscardHandler))
	if col == nil {
		t.Fatal("NewCollector returned nil")
	}
	// Every step used the client's pipelines and scripts across masters;
	// nothing may be left in a state the scripts refuse.
	for _, queue := range queues {
		if _, err := d.Pump(ctx, queue); err != nil {
			t.Errorf("final Pump on %s: %v", queue, err)
		}
	}
	if _, err := d.Stats(ctx, tenant, queues...); err != nil {
		t.Errorf("Stats over three queues: %v", err)
	}
	wait := time.After(30 * time.Second)
	for len(announced) < len(channels) {
		select {
		case ch := <-announcements:
			announced[ch] = true
		case <-wait:
			t.Fatalf("announcements received on %v; want every queue's of %v", announced, channels)
		}
	}
}

// tenantOfCluster returns the tenant of an id built by the cluster test
// ("invoice:pdf:<queue>:<tenant>:<n>").
func tenantOfCluster(id string) string {
	parts := strings.Split(id, ":")
	if len(parts) != 5 {
		return ""
	}
	return parts[3]
}
