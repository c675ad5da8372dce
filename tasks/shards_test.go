package tasks

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/tenantctx"
)

func mustLayout(t testing.TB, shards, served int) Layout {
	t.Helper()
	l, err := NewLayout(shards, served)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestLayoutOneShardUnchanged: one shard (the zero Layout and QUEUE_SHARDS=1)
// is exactly the queue set of old: the classes are the queues.
func TestLayoutOneShardUnchanged(t *testing.T) {
	t.Parallel()
	for _, l := range []Layout{{}, mustLayout(t, 1, 0), mustLayout(t, 1, 1)} {
		if l.Shards() != 1 || l.Served() != 1 || l.String() != "1" {
			t.Errorf("%+v: shards %d served %d %q", l, l.Shards(), l.Served(), l.String())
		}
		if !slices.Equal(l.Queues(), Queues) || !slices.Equal(l.WorkQueues(), WorkQueues) || !maps.Equal(l.Weights(), QueueWeights) {
			t.Errorf("%+v: queues %v work %v weights %v", l, l.Queues(), l.WorkQueues(), l.Weights())
		}
		for _, tenant := range []string{"", "tn_acme", "tn_globex", "tn_initech"} {
			for _, c := range Queues {
				if q := l.Queue(c, tenant); q != c {
					t.Errorf("Queue(%s, %q) = %s", c, tenant, q)
				}
			}
			if !slices.Equal(l.TenantQueues(tenant), Queues) {
				t.Errorf("TenantQueues(%q) = %v", tenant, l.TenantQueues(tenant))
			}
		}
	}
	l := Layout{}
	l.Weights()[QueueLow] = 100
	if QueueWeights[QueueLow] != 1 || l.Weights()[QueueLow] != 1 {
		t.Error("Weights shares its map")
	}
}

func TestNewLayoutRange(t *testing.T) {
	t.Parallel()
	for _, bad := range [][2]int{{0, 0}, {-1, 0}, {17, 0}, {3, 2}, {3, 17}, {1, -1}} {
		if _, err := NewLayout(bad[0], bad[1]); err == nil {
			t.Errorf("NewLayout(%d, %d) accepted", bad[0], bad[1])
		}
	}
	l := mustLayout(t, 2, 5)
	if l.Shards() != 2 || l.Served() != 5 || l.String() != "2 (serving 5)" {
		t.Errorf("layout %v: %d %d", l, l.Shards(), l.Served())
	}
	if len(l.Queues()) != 15 || len(l.WorkQueues()) != 10 {
		t.Errorf("queues %v work %v", l.Queues(), l.WorkQueues())
	}
}

// TestLayoutShards: with three shards every class has three queues, shard 0
// under the class's name; every shard has its class's weight, so the classes
// keep 6/3/1; a tenant's tasks of a class always go to one queue, and
// system tasks to shard 0.
func TestLayoutShards(t *testing.T) {
	t.Parallel()
	l := mustLayout(t, 3, 0)
	want := []string{"critical", "critical_2", "critical_4", "default", "default_1", "default_2", "low", "low_2", "low_3"}
	if !slices.Equal(l.Queues(), want) {
		t.Errorf("queues %v, want %v", l.Queues(), want)
	}
	if !slices.Equal(l.WorkQueues(), want[3:]) {
		t.Errorf("work queues %v", l.WorkQueues())
	}
	sum := map[string]int{}
	for q, w := range l.Weights() {
		c, ok := ClassOf(q)
		if !ok || w != QueueWeights[c] {
			t.Errorf("queue %s (class %q) weight %d", q, c, w)
		}
		sum[c] += w
	}
	if len(l.Weights()) != 9 || sum[QueueCritical] != 18 || sum[QueueDefault] != 9 || sum[QueueLow] != 3 {
		t.Errorf("weights %v: class sums %v, want 18/9/3", l.Weights(), sum)
	}
	for _, c := range Queues {
		if q := l.Queue(c, ""); q != c {
			t.Errorf("system task of %s in %s, want shard 0", c, q)
		}
	}
	if l.Queue("custom", "tn_acme") != "custom" {
		t.Error("an unknown class is not returned as it is")
	}
	for i := range 200 {
		tenant := fmt.Sprintf("tn_%04d", i)
		s := ShardOf(tenant, 3)
		for _, c := range Queues {
			if q := l.Queue(c, tenant); q != ShardQueue(c, s) || q != l.Queue(c, tenant) {
				t.Fatalf("Queue(%s, %s) = %s, want shard %d", c, tenant, q, s)
			}
		}
		if tq := l.TenantQueues(tenant); !slices.Contains(tq, l.Queue(QueueDefault, tenant)) || !slices.Contains(tq, QueueDefault) {
			t.Fatalf("TenantQueues(%s) = %v", tenant, tq)
		}
	}
}

// TestShardOfStable pins the tenant hash: tasks in Redis are where it put
// them, so it must never change.
func TestShardOfStable(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		id          string
		n2, n3, n16 int
	}{
		{"tn_acme", 0, 0, 4}, {"tn_globex", 0, 0, 11}, {"tn_initech", 1, 2, 11}, {"tn_umbrella", 1, 1, 13}, {"tn_0001", 1, 1, 13},
	} {
		if a, b, c := ShardOf(tt.id, 2), ShardOf(tt.id, 3), ShardOf(tt.id, 16); a != tt.n2 || b != tt.n3 || c != tt.n16 {
			t.Errorf("ShardOf(%s) = %d/%d/%d over 2/3/16, want %d/%d/%d", tt.id, a, b, c, tt.n2, tt.n3, tt.n16)
		}
	}
	for _, n := range []int{-1, 0, 1, 16} {
		if ShardOf("", n) != 0 {
			t.Errorf("ShardOf(\"\", %d) != 0", n)
		}
	}
}

// TestShardOfSpreads: tenants spread evenly over the shards, and one shard
// more moves only tenants to the new shard (about 1/(n+1) of them).
func TestShardOfSpreads(t *testing.T) {
	t.Parallel()
	const tenants = 30000
	ids := make([]string, tenants)
	for i := range ids {
		tn, err := tenantctx.New(fmt.Sprintf("slug-%d", i), "x", "free")
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = tn.ID
	}
	for n := 2; n <= MaxQueueShards; n++ {
		counts := make([]int, n)
		moved := 0
		for _, id := range ids {
			s := ShardOf(id, n)
			counts[s]++
			if prev := ShardOf(id, n-1); prev != s {
				moved++
				if s != n-1 {
					t.Fatalf("%s moved from shard %d to %d going from %d to %d shards", id, prev, s, n-1, n)
				}
			}
		}
		mean := float64(tenants) / float64(n)
		for s, c := range counts {
			if float64(c) < 0.9*mean || float64(c) > 1.1*mean {
				t.Errorf("%d shards: shard %d has %d tenants, mean %.0f (all: %v)", n, s, c, mean, counts)
			}
		}
		if want := float64(tenants) / float64(n); float64(moved) < 0.9*want || float64(moved) > 1.1*want {
			t.Errorf("%d -> %d shards moved %d tenants, want about %.0f", n-1, n, moved, want)
		}
	}
}

// keySlot is Redis Cluster's slot of a key: CRC16 (XMODEM) of its hash
// tag, mod 16384.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for _, c := range []byte(key) {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// masterOf is the master (0, 1, 2) of a slot in a 3-master cluster made by
// `redis-cli --cluster create`.
func masterOf(slot int) int {
	switch {
	case slot <= 5460:
		return 0
	case slot <= 10922:
		return 1
	}
	return 2
}

// TestShardNamesSpreadOverMasters: the shard names are distinct, valid
// queue names of the fair dispatcher's key layout, and each shard of a
// class lives on the master after its predecessor's in a 3-master cluster,
// so any shard count spreads a class as evenly as it can (3 shards: one
// on each master). The slots of the plain names are docs/operations.md's table.
func TestShardNamesSpreadOverMasters(t *testing.T) {
	t.Parallel()
	if keySlot("asynq:{default}:pending") != 5718 || keySlot("critical") != 8090 || keySlot("low") != 15214 || keySlot("tenantcache") != 1271 {
		t.Fatal("keySlot does not compute Redis Cluster slots")
	}
	seen := map[string]bool{}
	for _, c := range Queues {
		m0 := masterOf(keySlot(c))
		for i := range MaxQueueShards {
			q := ShardQueue(c, i)
			if seen[q] || q == "" || len(q) > 64 || strings.ContainsAny(q, "{}\t\r\n ") || !strings.HasPrefix(q, c) {
				t.Errorf("shard %d of %s: bad or repeated name %q", i, c, q)
			}
			seen[q] = true
			if got, ok := ClassOf(q); !ok || got != c {
				t.Errorf("ClassOf(%s) = %s, %v", q, got, ok)
			}
			if m := masterOf(keySlot(q)); m != (m0+i)%3 {
				t.Errorf("shard %d of %s (%s, slot %d) on master %d, want %d", i, c, q, keySlot(q), m+1, (m0+i)%3+1)
			}
		}
		for n := 1; n <= MaxQueueShards; n++ {
			per := [3]int{}
			for i := range n {
				per[masterOf(keySlot(ShardQueue(c, i)))]++
			}
			if slices.Max(per[:])-slices.Min(per[:]) > 1 {
				t.Errorf("%d shards of %s: %v per master", n, c, per)
			}
		}
	}
	if _, ok := ClassOf("default_5"); ok {
		t.Error("ClassOf accepts a name that is no shard")
	}
}

// TestTenantQueuesWhileResharding: with more shards served than used,
// a tenant's queues are its shard under the current count first, then
// its shards under every other count served.
func TestTenantQueuesWhileResharding(t *testing.T) {
	t.Parallel()
	l := mustLayout(t, 1, 3)
	for i := range 100 {
		tenant := fmt.Sprintf("tn_%04d", i)
		tq := l.TenantQueues(tenant)
		if tq[0] != QueueCritical {
			t.Fatalf("%s: %v does not start with the current shard", tenant, tq)
		}
		for n := 1; n <= 3; n++ {
			for _, c := range Queues {
				if q := ShardQueue(c, ShardOf(tenant, n)); !slices.Contains(tq, q) {
					t.Fatalf("%s: %v lacks %s (its shard under %d)", tenant, tq, q, n)
				}
			}
		}
	}
}

// TestHoldQueuesCoverEveryLayout: a tenant's hold queues, whatever the
// layout they are taken under, start with the first class's own queue
// (the same first queue for every process) and hold the layout's served
// queues and every queue the tenant's tasks can be in under any layout: a
// few per class beyond the served ones, not every shard.
func TestHoldQueuesCoverEveryLayout(t *testing.T) {
	t.Parallel()
	for i := range 100 {
		tenant := fmt.Sprintf("tn_%04d", i)
		hq := mustLayout(t, 1, 1).HoldQueues(tenant, Queues)
		if len(hq) >= len(Queues)*MaxQueueShards {
			t.Fatalf("%s: %d hold queues: every shard", tenant, len(hq))
		}
		if served := mustLayout(t, 2, 3); !slices.Equal(served.HoldQueues(tenant, Queues)[:9], served.Queues()) {
			t.Fatalf("%s: %v does not start with the served queues %v", tenant, served.HoldQueues(tenant, Queues), served.Queues())
		}
		if hq[0] != QueueCritical || mustLayout(t, 3, 4).HoldQueues(tenant, Queues)[0] != QueueCritical {
			t.Fatalf("%s: %v does not start with %s", tenant, hq, QueueCritical)
		}
		for shards := 1; shards <= MaxQueueShards; shards++ {
			for served := shards; served <= MaxQueueShards; served++ {
				for _, q := range mustLayout(t, shards, served).TenantQueues(tenant) {
					if !slices.Contains(hq, q) {
						t.Fatalf("%s: %v lacks %s, one of its queues with QUEUE_SHARDS=%d and QUEUE_SHARDS_SERVED=%d", tenant, hq, q, shards, served)
					}
				}
			}
		}
		if wq := mustLayout(t, 1, 1).HoldQueues(tenant, WorkQueues); slices.ContainsFunc(wq, func(q string) bool { c, _ := ClassOf(q); return !slices.Contains(WorkQueues, c) }) {
			t.Fatalf("%s: work queues %v hold a queue of another class", tenant, wq)
		}
	}
}

// TestEnqueueIntoShards: with three shards on a real Redis, each tenant's
// tasks go to its shard of the class, dedupe by id still works, the
// tenant finds its task and no other tenant does; system tasks go to
// shard 0. Then the same with fair admission.
func TestEnqueueIntoShards(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	opt := newRedis(t)
	l := mustLayout(t, 3, 0)
	client := asynq.NewClient(opt)
	inspector := asynq.NewInspector(opt)
	t.Cleanup(func() { _ = client.Close(); _ = inspector.Close() })
	enq := NewEnqueuer(client, inspector, discardLogger(), WithLayout(l))
	if enq.Layout() != l {
		t.Fatal("Layout() is not the layout given")
	}
	shards := map[string]bool{}
	for i := range 12 {
		tenant := fmt.Sprintf("tn_shard%02d", i)
		p := InvoicePDF{TenantID: tenant, InvoiceID: 1}
		first, err := enq.Enqueue(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		want := l.Queue(QueueDefault, tenant)
		if first.Info.Queue != want {
			t.Fatalf("%s: queue %s, want %s", tenant, first.Info.Queue, want)
		}
		shards[want] = true
		again, err := enq.Enqueue(ctx, p)
		if err != nil || !again.Existing || again.Info.Queue != want {
			t.Fatalf("%s: repeat = %+v, %v; want the existing task in %s", tenant, again, err, want)
		}
		info, err := enq.TenantTask(ctx, tenant, first.Info.ID)
		if err != nil || info.Queue != want {
			t.Fatalf("%s: TenantTask = %+v, %v", tenant, info, err)
		}
		if _, err := enq.TenantTask(ctx, "tn_other", first.Info.ID); !errors.Is(err, ErrTaskNotFound) {
			t.Fatalf("another tenant found %s: %v", first.Info.ID, err)
		}
		r, err := enq.Enqueue(ctx, InvoiceReminder{TenantID: tenant, InvoiceID: 1, Day: "2026-12-02"})
		if err != nil || r.Info.Queue != l.Queue(QueueLow, tenant) {
			t.Fatalf("%s: reminder in %+v, %v", tenant, r.Info, err)
		}
	}
	if len(shards) != 3 {
		t.Errorf("12 tenants used shards %v, want all 3", shards)
	}
	sweep, err := enq.Enqueue(ctx, SweepOverdue{Tick: 1})
	if err != nil || sweep.Info.Queue != QueueLow {
		t.Fatalf("sweep in %+v, %v; want %s", sweep.Info, err, QueueLow)
	}

	rdb := redis.NewClient(&redis.Options{Addr: opt.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	fairEnq, fairInspector, _, tn := fairSetupOn(t, rdb, 1)
	fairEnq.layout = l
	admitted := map[string]bool{}
	for _, tenant := range tn {
		want := l.Queue(QueueDefault, tenant.ID)
		var ids []string
		for i := range 3 { // the first is admitted, the others wait
			res, err := fairEnq.Enqueue(ctx, InvoicePDF{TenantID: tenant.ID, InvoiceID: int64(i + 1)})
			if err != nil || res.Info.Queue != want {
				t.Fatalf("%s: fair enqueue in %+v, %v; want %s", tenant.ID, res.Info, err, want)
			}
			ids = append(ids, res.Info.ID)
		}
		// One task is admitted per queue (one pending task): both tenants
		// may hash to the same shard, and then the second one's waits.
		if !admitted[want] {
			if info, err := fairInspector.GetTaskInfo(want, ids[0]); err != nil || info.State != asynq.TaskStatePending {
				t.Fatalf("%s: admitted task in %s: %+v, %v", tenant.ID, want, info, err)
			}
		}
		admitted[want] = true
		for _, id := range ids {
			if info, err := fairEnq.TenantTask(ctx, tenant.ID, id); err != nil || info.Queue != want {
				t.Fatalf("%s: TenantTask(%s) = %+v, %v", tenant.ID, id, info, err)
			}
		}
		batch, err := fairEnq.EnqueueMany(ctx, tenant.ID, []Payload{InvoicePDF{TenantID: tenant.ID, InvoiceID: 1}, InvoicePDF{TenantID: tenant.ID, InvoiceID: 9}})
		if err != nil || !batch[0].Existing || batch[1].Existing || batch[1].Info.Queue != want {
			t.Fatalf("%s: batch = %+v, %v", tenant.ID, batch, err)
		}
	}
}

// A worker dedicated to some classes serves every served shard of those
// only, in the order given, each with its class's weight; names that are
// not classes are left out.
func TestLayoutClassQueues(t *testing.T) {
	t.Parallel()
	l, err := NewLayout(2, 3)
	if err != nil {
		t.Fatal(err)
	}
	classes := []string{QueueDefault, "pdf", QueueCritical}
	want := []string{ShardQueue("default", 0), ShardQueue("default", 1), ShardQueue("default", 2),
		ShardQueue("critical", 0), ShardQueue("critical", 1), ShardQueue("critical", 2)}
	if got := l.ClassQueues(classes); !slices.Equal(got, want) {
		t.Errorf("ClassQueues = %v, want %v", got, want)
	}
	if !slices.Equal(classes, []string{QueueDefault, "pdf", QueueCritical}) {
		t.Errorf("ClassQueues changed its argument: %v", classes)
	}
	w := l.ClassWeights(classes)
	if len(w) != 6 || w[want[1]] != 3 || w[want[4]] != 6 {
		t.Errorf("ClassWeights = %v", w)
	}
	if !slices.Equal(l.ClassQueues(Queues), l.Queues()) || !maps.Equal(l.ClassWeights(Queues), l.Weights()) {
		t.Error("every class is not the whole layout")
	}
}
