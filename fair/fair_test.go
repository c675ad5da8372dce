package fair_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

func TestMain(m *testing.M) {
	os.Exit(testenv.MainLeakCheck(m))
}

// bundle is one test's Redis, dispatcher and fake clock.
type bundle struct {
	rdb   *redis.Client
	d     *fair.Dispatcher
	clock *testenv.ManualClock
}

// setup starts a Redis for the test and a dispatcher that keeps minPending
// tasks pending in asynq without worker heartbeats, and one per live slot
// with them (the time-based depth is tested on its own).
func setup(t *testing.T, minPending int) bundle {
	t.Helper()
	return setupConfig(t, fair.Config{MinPending: minPending, PendingPerSlot: 1, PendingTime: time.Microsecond})
}

// setupConfig is setup with a dispatcher configured by cfg (its clock is
// replaced by the test's).
func setupConfig(t *testing.T, cfg fair.Config) bundle {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	clock := testenv.NewManualClock(time.Unix(1_700_000_000, 0))
	cfg.Now = clock.Now
	return bundle{rdb: rdb, d: fair.New(rdb, cfg), clock: clock}
}

const q = "default"

// task returns a task of tenant in q with a JSON payload naming it.
func task(tenant string, n int) fair.Task {
	payload, _ := json.Marshal(map[string]any{"tenant_id": tenant, "invoice_id": n})
	return fair.Task{Message: fair.Message{
		ID: fmt.Sprintf("invoice:pdf:%s:%d", tenant, n), Type: "invoice:pdf", Queue: q,
		Payload: payload, Retry: 3, Timeout: time.Minute, Retention: time.Hour,
	}}
}

func enqueue(t *testing.T, b bundle, tenant string, p fair.Policy, from, n int) []fair.Result {
	t.Helper()
	var tasks []fair.Task
	for i := from; i < from+n; i++ {
		tasks = append(tasks, task(tenant, i))
	}
	res, err := b.d.Enqueue(context.Background(), tenant, p, tasks)
	if err != nil {
		t.Fatalf("enqueue %d tasks of %s: %v", n, tenant, err)
	}
	return res
}

// dequeue does what an asynq worker's dequeue does: it takes the oldest
// pending task of q and marks it active. It returns "" when none is
// pending.
func dequeue(t *testing.T, b bundle) string {
	t.Helper()
	ctx := context.Background()
	id, err := b.rdb.LMove(ctx, "asynq:{"+q+"}:pending", "asynq:{"+q+"}:active", "RIGHT", "LEFT").Result()
	if err == redis.Nil {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	b.rdb.HSet(ctx, "asynq:{"+q+"}:t:"+id, "state", "active")
	return id
}

// done does what asynq does after a handler returned nil for a task
// without retention: the task is gone.
func done(t *testing.T, b bundle, id string) {
	t.Helper()
	ctx := context.Background()
	b.rdb.LRem(ctx, "asynq:{"+q+"}:active", 0, id)
	b.rdb.Del(ctx, "asynq:{"+q+"}:t:"+id)
}

// tenantOf returns the tenant of a task id built by task().
func tenantOf(id string) string {
	rest := strings.TrimPrefix(id, "invoice:pdf:")
	return rest[:strings.LastIndexByte(rest, ':')]
}

// work runs n tasks through a simulated worker: dequeue, report with the
// cost costOf(tenant), done. It returns the tenants in the order their
// tasks ran.
func work(t *testing.T, b bundle, n int, costOf func(tenant string) time.Duration) []string {
	t.Helper()
	var order []string
	for range n {
		id := dequeue(t, b)
		if id == "" {
			break
		}
		tenant := tenantOf(id)
		order = append(order, tenant)
		rep := fair.Report{Queue: q, TaskID: id, TenantID: tenant, Type: "invoice:pdf", Cost: costOf(tenant)}
		if err := b.d.Complete(context.Background(), q, []fair.Report{rep}); err != nil {
			t.Fatal(err)
		}
		done(t, b, id)
	}
	return order
}

func equalCost(string) time.Duration { return time.Millisecond }

func pendingLen(t *testing.T, b bundle) int64 {
	t.Helper()
	n, err := b.rdb.LLen(context.Background(), "asynq:{"+q+"}:pending").Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func stats(t *testing.T, b bundle, tenant string) fair.QueueStats {
	t.Helper()
	s, err := b.d.Stats(context.Background(), tenant, q)
	if err != nil {
		t.Fatal(err)
	}
	return s[0]
}

func TestQuietTenantGoesFirst(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	p := fair.Policy{Weight: 1}
	enqueue(t, b, "tn_noisy", p, 0, 500)
	if got := pendingLen(t, b); got != 2 {
		t.Fatalf("asynq pending = %d, want 2 (the rest waits in the backlog)", got)
	}
	enqueue(t, b, "tn_quiet", p, 0, 1)
	// The quiet tenant's task is admitted at the first completion, ahead
	// of the noisy task admitted before it (a tenant with nothing admitted
	// gets the head of asynq's list): it runs second, not 501st.
	order := work(t, b, 4, equalCost)
	if order[1] != "tn_quiet" {
		t.Fatalf("run order %v: want the quiet tenant second", order)
	}
	// Three noisy tasks ran and two more are pending: 495 still wait.
	if s := stats(t, b, "tn_noisy"); s.Waiting != 495 || s.Admitted != 2 {
		t.Fatalf("noisy tenant: %d waiting, %d admitted; want 495 and 2", s.Waiting, s.Admitted)
	}
}

// TestQuietTenantsGoToTheHead: the task of a tenant with nothing else
// admitted, running or waiting goes ahead of what asynq's list holds,
// several such tenants in the order they were admitted; a tenant with a
// backlog queues behind, also with nothing admitted yet (as a tenant
// held to one running task by its cap is at each admission).
func TestQuietTenantsGoToTheHead(t *testing.T) {
	t.Parallel()
	b := setup(t, 3)
	ctx := context.Background()
	p := fair.Policy{Weight: 1}
	enqueue(t, b, "tn_hn", p, 0, 100) // three admitted: 0, 1, 2
	enqueue(t, b, "tn_ha", p, 0, 1)   // the list is full: these wait
	enqueue(t, b, "tn_hb", p, 0, 1)
	enqueue(t, b, "tn_hc", fair.Policy{Weight: 1, MaxRunning: 1}, 0, 3)
	// Room for four more: tn_ha, tn_hb and tn_hc come first in the fair
	// order (tn_hc with one task: its cap), then tn_hn.
	if err := b.d.Heartbeat(ctx, q, "w1", 7, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		id := dequeue(t, b)
		if id == "" {
			break
		}
		got = append(got, id)
	}
	want := []string{
		"invoice:pdf:tn_ha:0", "invoice:pdf:tn_hb:0", // quiet tenants' tasks: the head
		"invoice:pdf:tn_hn:0", "invoice:pdf:tn_hn:1", "invoice:pdf:tn_hn:2", // admitted before them
	}
	if len(got) != 7 || !slices.Equal(got[:5], want) {
		t.Fatalf("asynq ran %v; want %v first, then tn_hc:0 and tn_hn:3 in either order", got, want)
	}
	if rest := []string{got[5], got[6]}; !slices.Contains(rest, "invoice:pdf:tn_hc:0") || !slices.Contains(rest, "invoice:pdf:tn_hn:3") {
		t.Fatalf("asynq ran %v; the last two should be tn_hc:0 (a tenant with a backlog) and tn_hn:3, queued behind", got)
	}
}

func TestWeightsShareWorkerTime(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	weights := map[string]int{"tn_one": 1, "tn_two": 2, "tn_four": 4}
	for tenant, w := range weights {
		enqueue(t, b, tenant, fair.Policy{Weight: w}, 0, 800)
	}
	order := work(t, b, 700, equalCost)
	count := map[string]int{}
	for _, tenant := range order[20:] { // past the start-up
		count[tenant]++
	}
	total := len(order) - 20
	for tenant, w := range weights {
		want := float64(total) * float64(w) / 7
		if got := float64(count[tenant]); got < want*0.95 || got > want*1.05 {
			t.Errorf("%s (weight %d) ran %v of %d tasks, want %.0f within 5%%", tenant, w, got, total, want)
		}
	}
}

func TestSlowTenantGetsEqualTimeNotEqualCount(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	for _, tenant := range []string{"tn_slow", "tn_fast"} {
		enqueue(t, b, tenant, fair.Policy{Weight: 1}, 0, 2000)
	}
	cost := func(tenant string) time.Duration {
		if tenant == "tn_slow" {
			return 10 * time.Millisecond
		}
		return time.Millisecond
	}
	order := work(t, b, 1500, cost)
	spent := map[string]time.Duration{}
	for _, tenant := range order[100:] {
		spent[tenant] += cost(tenant)
	}
	ratio := float64(spent["tn_slow"]) / float64(spent["tn_fast"])
	if ratio < 0.9 || ratio > 1.1 {
		t.Fatalf("worker time slow/fast = %.3f (%v vs %v), want 1 within 10%%", ratio, spent["tn_slow"], spent["tn_fast"])
	}
}

func TestJainIndexTenEqualTenants(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	var tenants []string
	for i := range 10 {
		tenant := fmt.Sprintf("tn_t%02d", i)
		tenants = append(tenants, tenant)
		enqueue(t, b, tenant, fair.Policy{Weight: 1}, 0, 300)
	}
	order := work(t, b, 1000, equalCost)
	count := map[string]float64{}
	for _, tenant := range order {
		count[tenant]++
	}
	var sum, sq float64
	for _, tenant := range tenants {
		sum += count[tenant]
		sq += count[tenant] * count[tenant]
	}
	if jain := sum * sum / (float64(len(tenants)) * sq); jain < 0.99 {
		t.Fatalf("Jain index %.4f < 0.99 (%v)", jain, count)
	}
}

func TestMaxRunningCapsAdmittedTasks(t *testing.T) {
	t.Parallel()
	b := setup(t, 50)
	enqueue(t, b, "tn_capped", fair.Policy{Weight: 1, MaxRunning: 3}, 0, 20)
	if got := pendingLen(t, b); got != 3 {
		t.Fatalf("pending = %d, want the cap of 3", got)
	}
	enqueue(t, b, "tn_other", fair.Policy{Weight: 1}, 0, 5)
	if got := pendingLen(t, b); got != 8 {
		t.Fatalf("pending = %d, want 3 capped + 5 other", got)
	}
	// Finishing one capped task admits exactly one more of it.
	for {
		id := dequeue(t, b)
		if id == "" {
			t.Fatal("no capped task pending")
		}
		tenant := tenantOf(id)
		if err := b.d.Complete(context.Background(), q, []fair.Report{{Queue: q, TaskID: id, TenantID: tenant, Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
			t.Fatal(err)
		}
		done(t, b, id)
		if tenant == "tn_capped" {
			break
		}
	}
	s := stats(t, b, "tn_capped")
	if s.Admitted != 3 || s.Waiting != 16 {
		t.Fatalf("capped tenant: admitted %d waiting %d, want 3 and 16", s.Admitted, s.Waiting)
	}
}

func TestMaxWaitingRefusesWholeBatch(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	p := fair.Policy{Weight: 1, MaxWaiting: 10}
	enqueue(t, b, "tn_full", p, 0, 8) // 1 admitted, 7 waiting
	_, err := b.d.Enqueue(context.Background(), "tn_full", p, []fair.Task{task("tn_full", 100), task("tn_full", 101), task("tn_full", 102), task("tn_full", 103)})
	var full *fair.FullError
	if !errors.As(err, &full) || full.Waiting != 7 || full.RetryAfter < time.Second {
		t.Fatalf("err = %v, want a FullError with 7 waiting and a Retry-After", err)
	}
	if s := stats(t, b, "tn_full"); s.Waiting != 7 {
		t.Fatalf("waiting = %d after a refused batch, want 7 (nothing accepted)", s.Waiting)
	}
	// Duplicates do not count against the cap.
	res := enqueue(t, b, "tn_full", p, 0, 8)
	for _, r := range res {
		if !r.Existing {
			t.Fatalf("re-enqueue of %s: not reported as existing", r.ID)
		}
	}
}

// TestMaxWaitingTotalCapsTheQueue: the tenants' backlogs of a queue
// together stop at MaxWaitingTotal, whatever each tenant's own cap; past
// it a batch is refused whole with a queue-wide FullError (ErrQueueFull,
// not a tenant's ErrBacklogFull), repeats still answer, and room frees up as tasks are
// admitted. A negative cap is no cap.
func TestMaxWaitingTotalCapsTheQueue(t *testing.T) {
	t.Parallel()
	b := setupConfig(t, fair.Config{MinPending: 1, PendingPerSlot: 1, PendingTime: time.Microsecond, MaxWaitingTotal: 10})
	ctx := context.Background()
	p := fair.Policy{Weight: 1, MaxWaiting: 100}
	enqueue(t, b, "tn_qa", p, 0, 6) // 1 admitted, 5 waiting
	enqueue(t, b, "tn_qb", p, 0, 5) // 10 waiting in all
	_, err := b.d.Enqueue(ctx, "tn_qc", p, []fair.Task{task("tn_qc", 0)})
	var full *fair.FullError
	if !errors.As(err, &full) || !full.QueueWide || !errors.Is(err, fair.ErrQueueFull) || errors.Is(err, fair.ErrBacklogFull) || full.Waiting != 10 || full.RetryAfter < time.Second {
		t.Fatalf("err = %v, want a queue-wide FullError with 10 waiting and a Retry-After", err)
	}
	if s := stats(t, b, "tn_qc"); s.Waiting != 0 {
		t.Fatalf("tn_qc waits %d after its refused enqueue, want 0", s.Waiting)
	}
	for _, r := range enqueue(t, b, "tn_qb", p, 0, 5) {
		if !r.Existing {
			t.Fatalf("repeat of %s past the queue's cap: not reported as existing", r.ID)
		}
	}
	work(t, b, 2, equalCost) // two admitted and run: two waiting tasks admitted
	enqueue(t, b, "tn_qc", p, 0, 2)
	if _, err := b.d.Enqueue(ctx, "tn_qc", p, []fair.Task{task("tn_qc", 2)}); !errors.Is(err, fair.ErrQueueFull) {
		t.Fatalf("err = %v past the cap again, want ErrQueueFull", err)
	}

	unlimited := setupConfig(t, fair.Config{MinPending: 1, MaxWaitingTotal: -1})
	enqueue(t, unlimited, "tn_qd", p, 0, 50)
	if s := stats(t, unlimited, "tn_qd"); s.Waiting+s.Admitted != 50 {
		t.Fatalf("without a queue cap: %+v, want all 50 accepted", s)
	}
}

func TestDedupeWaitingAndAdmitted(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	p := fair.Policy{Weight: 1}
	first := enqueue(t, b, "tn_dup", p, 0, 2) // #0 admitted, #1 waiting
	if first[0].Existing || first[1].Existing {
		t.Fatalf("first enqueue reported existing: %+v", first)
	}
	again := enqueue(t, b, "tn_dup", p, 0, 2)
	for _, r := range again {
		if !r.Existing || r.State != "pending" {
			t.Fatalf("repeat of %s = %+v, want existing and pending", r.ID, r)
		}
	}
	id := dequeue(t, b)
	again = enqueue(t, b, "tn_dup", p, 0, 1)
	if again[0].ID != id || !again[0].Existing || again[0].State != "active" {
		t.Fatalf("repeat of running %s = %+v, want existing and active", id, again[0])
	}
	// A completed task is replaced only when the caller asks for it.
	ctx := context.Background()
	b.rdb.HSet(ctx, "asynq:{"+q+"}:t:"+id, "state", "completed")
	b.rdb.ZAdd(ctx, "asynq:{"+q+"}:completed", redis.Z{Score: 1, Member: id})
	keep, err := b.d.Enqueue(ctx, "tn_dup", p, []fair.Task{task("tn_dup", 0)})
	if err != nil || !keep[0].Existing || keep[0].State != "completed" {
		t.Fatalf("keep-existing enqueue of completed task = %+v, %v", keep, err)
	}
	// Reported by its worker (before that a replace ends its run:
	// TestReplaceBeforeTheReportEndsTheFinishedRun).
	if err := b.d.Complete(ctx, q, []fair.Report{{TaskID: id, TenantID: "tn_dup", Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	replace := task("tn_dup", 0)
	replace.ReplaceFinished = true
	res, err := b.d.Enqueue(ctx, "tn_dup", p, []fair.Task{replace})
	if err != nil || res[0].Existing || res[0].State != "pending" {
		t.Fatalf("replacing enqueue = %+v, %v", res, err)
	}
	if n, _ := b.rdb.ZCard(ctx, "asynq:{"+q+"}:completed").Result(); n != 0 {
		t.Fatalf("completed set still holds %d tasks after the replace", n)
	}
}

func TestWaitingTaskIsVisible(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	enqueue(t, b, "tn_vis", fair.Policy{Weight: 1}, 0, 3)
	ctx := context.Background()
	w, ok, err := b.d.Waiting(ctx, task("tn_vis", 2).Message.ID, "low", q)
	if err != nil || !ok {
		t.Fatalf("Waiting = %v, %v", ok, err)
	}
	if w.TenantID != "tn_vis" || w.Type != "invoice:pdf" || w.Message.Queue != q || w.Message.Retry != 3 {
		t.Fatalf("waiting task = %+v", w)
	}
	if _, ok, _ := b.d.Waiting(ctx, task("tn_vis", 0).Message.ID, q); ok {
		t.Fatal("an admitted task is reported as waiting")
	}
	s := stats(t, b, "tn_vis")
	if s.Waiting != 2 || s.Admitted != 1 || s.WaitingByType["invoice:pdf"] != 2 {
		t.Fatalf("stats = %+v", s)
	}
	b.clock.Advance(3 * time.Second)
	if s := stats(t, b, "tn_vis"); s.OldestWait != 3*time.Second {
		t.Fatalf("oldest wait = %v, want 3s", s.OldestWait)
	}
	top, total, err := b.d.Top(ctx, q, 5)
	if err != nil || total != 2 || len(top) != 1 || top[0] != (fair.Depth{TenantID: "tn_vis", Waiting: 2}) {
		t.Fatalf("Top = %v, %d, %v", top, total, err)
	}
}

func TestHoldMovesBackAndReleaseKeepsOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, 3)
	ctx := context.Background()
	enqueue(t, b, "tn_held", fair.Policy{Weight: 1}, 0, 10) // 0,1,2 admitted
	moved, err := b.d.Hold(ctx, "tn_held", fair.Suspended, q)
	if err != nil || moved != 3 {
		t.Fatalf("Hold moved %d, %v; want 3", moved, err)
	}
	if got := pendingLen(t, b); got != 0 {
		t.Fatalf("pending = %d after hold", got)
	}
	enqueue(t, b, "tn_held", fair.Policy{Weight: 1}, 10, 2)
	if got := pendingLen(t, b); got != 0 {
		t.Fatalf("pending = %d: a held tenant's new task was admitted", got)
	}
	// A second reason keeps it held when the first is released.
	if _, err := b.d.Hold(ctx, "tn_held", fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	if _, err := b.d.Release(ctx, "tn_held", fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	if got := pendingLen(t, b); got != 0 {
		t.Fatalf("pending = %d while still paused", got)
	}
	if s := stats(t, b, "tn_held"); !s.Paused || s.Suspended {
		t.Fatalf("hold reasons = %+v", s)
	}
	if _, err := b.d.Release(ctx, "tn_held", fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	if order := work(t, b, 20, equalCost); len(order) != 12 {
		t.Fatalf("%d tasks ran after the release, want all 12", len(order))
	}
	// Run order after a release is the enqueue order.
	b2 := setup(t, 1)
	enqueue(t, b2, "tn_ord", fair.Policy{Weight: 1}, 0, 3)
	if _, err := b2.d.Hold(ctx, "tn_ord", fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	if _, err := b2.d.Release(ctx, "tn_ord", fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		id := dequeue(t, b2)
		if want := task("tn_ord", i).Message.ID; id != want {
			t.Fatalf("run %d: %s, want %s", i, id, want)
		}
		if err := b2.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: id, TenantID: "tn_ord", Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
			t.Fatal(err)
		}
		done(t, b2, id)
	}
}

// toRetry does what asynq does with the parking worker's error for task
// id: it leaves the active list for the retry set, due an hour later.
func toRetry(t *testing.T, b bundle, id string) {
	t.Helper()
	ctx := context.Background()
	b.rdb.LRem(ctx, "asynq:{"+q+"}:active", 0, id)
	b.rdb.HSet(ctx, "asynq:{"+q+"}:t:"+id, "state", "retry")
	b.rdb.ZAdd(ctx, "asynq:{"+q+"}:retry", redis.Z{Score: float64(time.Now().Add(time.Hour).Unix()), Member: id})
}

func TestParkedTaskComesBackOnRelease(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	ctx := context.Background()
	enqueue(t, b, "tn_park", fair.Policy{Weight: 1}, 0, 3)
	id := dequeue(t, b) // a worker got it just before the suspension
	holdAndPark(t, b, "tn_park", id, fair.Suspended)
	// What asynq does with the worker's not-a-failure error: to retry.
	toRetry(t, b, id)
	if s := stats(t, b, "tn_park"); s.Parked != 1 || s.Waiting != 2 || s.Admitted != 0 {
		t.Fatalf("stats while held = %+v", s)
	}
	if _, err := b.d.Release(ctx, "tn_park", fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	if n, _ := b.rdb.ZCard(ctx, "asynq:{"+q+"}:retry").Result(); n != 0 {
		t.Fatal("parked task still in asynq's retry set after release")
	}
	if first := dequeue(t, b); first != id {
		t.Fatalf("first task after release = %s, want the parked %s", first, id)
	}
	// Not held: Park says so and records nothing.
	parked, err := b.d.Park(ctx, q, id, "tn_park", "invoice:pdf")
	if err != nil || parked {
		t.Fatalf("Park of a free tenant = %v, %v", parked, err)
	}
}

func TestDrainDiscardsOnlyThatTenant(t *testing.T) {
	t.Parallel()
	b := setup(t, 4)
	ctx := context.Background()
	enqueue(t, b, "tn_drain", fair.Policy{Weight: 1}, 0, 10)
	enqueue(t, b, "tn_keep", fair.Policy{Weight: 1}, 0, 10)
	dequeue(t, b) // tn_drain's first: running, not drained
	n, err := b.d.Drain(ctx, "tn_drain", q)
	if err != nil {
		t.Fatal(err)
	}
	if n.Total() != 9 {
		t.Fatalf("drained %+v, want 9 (10 minus the running one)", n)
	}
	if s := stats(t, b, "tn_drain"); s.Waiting != 0 || s.Admitted != 1 || s.Running != 1 {
		t.Fatalf("drained tenant stats %+v", s)
	}
	if s := stats(t, b, "tn_keep"); s.Waiting+s.Admitted != 10 {
		t.Fatalf("other tenant lost tasks: %+v", s)
	}
	if _, ok, _ := b.d.Waiting(ctx, task("tn_drain", 9).Message.ID, q); ok {
		t.Fatal("drained task still visible")
	}
}

func TestLeaseFreesSlotOfVanishedTask(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	ctx := context.Background()
	enqueue(t, b, "tn_lost", fair.Policy{Weight: 1, MaxRunning: 1}, 0, 2)
	id := dequeue(t, b)
	// The worker dies and an operator deletes the task: no report ever comes.
	done(t, b, id)
	if _, err := b.d.Pump(ctx, q); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, "tn_lost"); s.Admitted != 1 || s.Waiting != 1 {
		t.Fatalf("before the lease ran out: %+v", s)
	}
	b.clock.Advance(fair.DefaultLease + time.Second)
	if n, err := b.d.Pump(ctx, q); err != nil || n != 1 {
		t.Fatalf("pump after the lease = %d, %v; want the second task admitted", n, err)
	}
	// A task still pending or running is not reaped, only checked again.
	b.clock.Advance(fair.DefaultLease + time.Second)
	if _, err := b.d.Pump(ctx, q); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, "tn_lost"); s.Admitted != 1 {
		t.Fatalf("a pending task lost its admission: %+v", s)
	}
}

// TestLeaseKeepsTheSlotOfARunningTask: a task that runs longer than its
// lease (a render of a large invoice) is checked again when the lease runs
// out, not reaped: asynq holds it as active, so it keeps its running slot,
// and the tenant's next task waits for its report, as max_running says.
func TestLeaseKeepsTheSlotOfARunningTask(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	ctx := context.Background()
	enqueue(t, b, "tn_long", fair.Policy{Weight: 1, MaxRunning: 1}, 0, 2)
	id := dequeue(t, b) // a worker runs it, for longer than the lease
	for range 3 {
		b.clock.Advance(fair.DefaultLease + time.Second)
		if n, err := b.d.Pump(ctx, q); err != nil || n != 0 {
			t.Fatalf("pump while the first task runs past its lease = %d, %v; want nothing admitted (max_running 1)", n, err)
		}
	}
	if s := stats(t, b, "tn_long"); s.Admitted != 1 || s.Waiting != 1 {
		t.Fatalf("while the first task runs past its lease: %+v; want it admitted and the second waiting", s)
	}
	if got := pendingLen(t, b); got != 0 {
		t.Fatalf("pending = %d while the tenant's one slot runs", got)
	}
	// Its report frees the slot for the next task.
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: id, TenantID: "tn_long", Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	done(t, b, id)
	if _, err := b.d.Pump(ctx, q); err != nil {
		t.Fatal(err)
	}
	if got := pendingLen(t, b); got != 1 {
		t.Fatalf("pending = %d after the report, want the second task admitted", got)
	}
}

// TestLeaseEndOfAnArchivedTaskBlanksItsRun: an admitted task an operator
// archived from the dashboard before any worker took it never reports;
// when its lease runs out its run ends (its slot is freed) and the run
// named in asynq's copy of its message is blanked, so that a "run now"
// from the dashboard asks the gate (held tenant, running cap) instead of
// running as an admitted first attempt past both.
func TestLeaseEndOfAnArchivedTaskBlanksItsRun(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	ctx := context.Background()
	enqueue(t, b, "tn_arch", fair.Policy{Weight: 1, MaxRunning: 1}, 0, 1)
	id := task("tn_arch", 0).Message.ID
	A := "asynq:{" + q + "}:"
	msg, err := b.rdb.HGet(ctx, A+"t:"+id, "msg").Bytes()
	if err != nil || runOf(msg) == "" {
		t.Fatalf("admitted message names run %q (%v); want a run", runOf(msg), err)
	}
	// The operator archives it from the dashboard, as asynq's inspector does.
	b.rdb.LRem(ctx, A+"pending", 0, id)
	b.rdb.ZAdd(ctx, A+"archived", redis.Z{Score: float64(b.clock.Now().Unix()), Member: id})
	b.rdb.HSet(ctx, A+"t:"+id, "state", "archived")

	b.clock.Advance(fair.DefaultLease + time.Second)
	if _, err := b.d.Pump(ctx, q); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, "tn_arch"); s.Admitted != 0 {
		t.Fatalf("after the lease of the archived task: %+v; want its slot freed", s)
	}
	msg, err = b.rdb.HGet(ctx, A+"t:"+id, "msg").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if run := runOf(msg); run != "" {
		t.Fatalf("the archived task's message still names run %q after its run ended; want none (a re-run asks the gate)", run)
	}
}

func TestHeartbeatSizesPendingDepth(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	enqueue(t, b, "tn_hb", fair.Policy{Weight: 1}, 0, 50)
	if err := b.d.Heartbeat(ctx, q, "w1", 10, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.d.Heartbeat(ctx, q, "w2", 6, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := pendingLen(t, b); got != 16 {
		t.Fatalf("pending = %d with 16 live slots, want 16", got)
	}
	// w1 stops beating: past its ttl only w2's 6 count (nothing is taken back).
	b.clock.Advance(6 * time.Second)
	if err := b.d.Heartbeat(ctx, q, "w2", 6, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for range 16 {
		work(t, b, 1, equalCost)
	}
	if got := pendingLen(t, b); got != 6 {
		t.Fatalf("pending = %d after w1 expired, want 6", got)
	}
}

// TestHostileTenantIDsNeverReachRedis: every call of the dispatcher that
// takes a tenant id validates it before the id becomes part of a key (I20):
// an invalid one is refused and sends Redis nothing.
func TestHostileTenantIDsNeverReachRedis(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	sent := &testenv.CountCommands{}
	b.rdb.AddHook(sent)
	for _, id := range []string{"", "tn_a}:x", "tn_a\tb", "../x", "tn_" + string(make([]byte, 500)), "x:{default}"} {
		// Every call that takes a tenant id refuses it before it sends
		// Redis anything (Parked answers "nothing parked").
		for name, call := range map[string]func() error{
			"Enqueue": func() error {
				_, err := b.d.Enqueue(ctx, id, fair.Policy{}, []fair.Task{task("tn_ok", 1)})
				return err
			},
			"Hold":  func() error { _, err := b.d.Hold(ctx, id, fair.Paused, q); return err },
			"Drain": func() error { _, err := b.d.Drain(ctx, id, q); return err },
			"Complete": func() error {
				return b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: "invoice:pdf:x:1", TenantID: id, Type: "invoice:pdf", Cost: time.Millisecond}})
			},
			"SetPolicy": func() error { return b.d.SetPolicy(ctx, id, fair.Policy{Weight: 1}, q) },
			"Park":      func() error { _, err := b.d.Park(ctx, q, "invoice:pdf:x:1", id, "invoice:pdf"); return err },
			"ParkRun":   func() error { _, err := b.d.ParkRun(ctx, q, "invoice:pdf:x:1", id, "invoice:pdf", "1"); return err },
			"Gate":      func() error { _, err := b.d.Gate(ctx, q, "invoice:pdf:x:1", id, "invoice:pdf"); return err },
			"GateRun":   func() error { _, _, err := b.d.GateRun(ctx, q, "invoice:pdf:x:1", id, "invoice:pdf"); return err },
			"Release":   func() error { _, err := b.d.Release(ctx, id, fair.Paused, q); return err },
			"Forget":    func() error { return b.d.Forget(ctx, id, q) },
			"Stats":     func() error { _, err := b.d.Stats(ctx, id, q); return err },
			"HeldFor":   func() error { _, err := b.d.HeldFor(ctx, id, fair.Paused, q); return err },
			"Parked": func() error {
				if _, found, err := b.d.Parked(ctx, id, "invoice:pdf:x:1", q); err != nil || found {
					return fmt.Errorf("found %v, err %v", found, err)
				}
				return errors.New("nothing parked")
			},
		} {
			before := sent.Sent()
			if err := call(); err == nil {
				t.Errorf("%s accepted tenant id %.40q", name, id)
			}
			if n := sent.Sent() - before; n != 0 {
				t.Errorf("%s sent %d commands for tenant id %.40q, want none", name, n, id)
			}
		}
	}
	keys, err := b.rdb.Keys(ctx, "*").Result()
	if err != nil || len(keys) != 0 {
		t.Fatalf("keys after hostile calls: %v, %v", keys, err)
	}
}

// TestConcurrentProducersAndWorkers runs enqueues and simulated workers at
// once: every task runs exactly once, none is lost, and the running cap
// holds throughout.
func TestConcurrentProducersAndWorkers(t *testing.T) {
	t.Parallel()
	b := setup(t, 8)
	ctx := context.Background()
	const tenants, perTenant, capRunning = 6, 200, 2
	var wg sync.WaitGroup
	for i := range tenants {
		tenant := fmt.Sprintf("tn_c%d", i)
		wg.Go(func() {
			for j := 0; j < perTenant; j += 10 {
				var batch []fair.Task
				for k := j; k < j+10; k++ {
					batch = append(batch, task(tenant, k))
				}
				if _, err := b.d.Enqueue(ctx, tenant, fair.Policy{Weight: 1, MaxRunning: capRunning}, batch); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var mu sync.Mutex
	seen := map[string]int{}
	running := map[string]int{}
	var violations int
	stop := make(chan struct{})
	var workers sync.WaitGroup
	for range 4 {
		workers.Go(func() {
			for {
				id, err := b.rdb.LMove(ctx, "asynq:{"+q+"}:pending", "asynq:{"+q+"}:active", "RIGHT", "LEFT").Result()
				if err == redis.Nil {
					select {
					case <-stop:
						return
					case <-time.After(time.Millisecond):
						_, _ = b.d.Pump(ctx, q)
						continue
					}
				}
				if err != nil {
					t.Error(err)
					return
				}
				tenant := tenantOf(id)
				mu.Lock()
				seen[id]++
				running[tenant]++
				if running[tenant] > capRunning {
					violations++
				}
				mu.Unlock()
				b.rdb.HSet(ctx, "asynq:{"+q+"}:t:"+id, "state", "active")
				mu.Lock()
				running[tenant]--
				mu.Unlock()
				b.rdb.LRem(ctx, "asynq:{"+q+"}:active", 0, id)
				b.rdb.Del(ctx, "asynq:{"+q+"}:t:"+id)
				if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: id, TenantID: tenant, Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// 1,200 tasks of six Redis calls each, under -race on a loaded
	// machine: the deadline is for a stuck run, not a slow one.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == tenants*perTenant || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	workers.Wait()
	if len(seen) != tenants*perTenant {
		t.Fatalf("%d of %d tasks ran", len(seen), tenants*perTenant)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("task %s ran %d times", id, n)
		}
	}
	if violations > 0 {
		t.Fatalf("running cap exceeded %d times", violations)
	}
}

func TestCollectorBoundsCardinality(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	for i := range 12 {
		enqueue(t, b, fmt.Sprintf("tn_m%02d", i), fair.Policy{Weight: 1}, 0, 10+i)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(b.d.NewCollector([]string{q}, 3, nil))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() == "tenant" {
					name += "/" + l.GetValue()
				}
			}
			series[name] = m.GetGauge().GetValue()
		}
	}
	// One task of the first tenant was admitted; 12 tenants wait with
	// 9+11+12+...+21 tasks; the top 3 are tn_m11, tn_m10, tn_m09.
	total := 9.0
	for i := 1; i < 12; i++ {
		total += float64(10 + i)
	}
	want := map[string]float64{
		"tenantworker_fair_waiting_tasks/tn_m11": 21,
		"tenantworker_fair_waiting_tasks/tn_m10": 20,
		"tenantworker_fair_waiting_tasks/tn_m09": 19,
		"tenantworker_fair_waiting_tasks/other":  total - 60,
		"tenantworker_fair_waiting_total":        total,
	}
	if len(series) != len(want) {
		t.Fatalf("series %v, want %v", series, want)
	}
	for k, v := range want {
		if series[k] != v {
			t.Fatalf("%s = %v, want %v (all: %v)", k, series[k], v, series)
		}
	}
}

func TestForgetLeavesNothingOfTheTenant(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	enqueue(t, b, "tn_gone", fair.Policy{Weight: 2, MaxRunning: 1}, 0, 5)
	enqueue(t, b, "tn_stay", fair.Policy{Weight: 1}, 0, 2)
	work(t, b, 1, equalCost)
	if _, err := b.d.Hold(ctx, "tn_gone", fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	if err := b.d.Forget(ctx, "tn_gone", q); err != nil {
		t.Fatal(err)
	}
	// A late report of the erased tenant's last task recreates nothing.
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: "x", TenantID: "tn_gone", Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	keys, err := b.rdb.Keys(ctx, "fair:*tn_gone*").Result()
	if err != nil || len(keys) != 0 {
		t.Fatalf("keys of the forgotten tenant: %v, %v", keys, err)
	}
	for _, k := range []string{"fair:{" + q + "}:hold", "fair:{" + q + "}:adm"} {
		vals, _ := b.rdb.HGetAll(ctx, k).Result()
		for f, v := range vals {
			if strings.Contains(f, "tn_gone") || strings.Contains(v, "tn_gone") {
				t.Fatalf("%s still holds %s=%s", k, f, v)
			}
		}
	}
	if s := stats(t, b, "tn_stay"); s.Waiting+s.Admitted != 2 {
		t.Fatalf("other tenant: %+v", s)
	}
}

// TestPendingDepthFollowsMeasuredCost: the dispatcher keeps about
// PendingTime of work pending per live slot, so cheap tasks get a deep
// list (workers never wait for a refill) and expensive ones a shallow one
// (a newly arrived tenant waits behind little work), within the per-slot
// bounds.
func TestPendingDepthFollowsMeasuredCost(t *testing.T) {
	t.Parallel()
	b := setupConfig(t, fair.Config{MinPending: 1, PendingTime: 20 * time.Millisecond, PendingPerSlot: 1, MaxPendingPerSlot: 8})
	ctx := context.Background()
	if err := b.d.Heartbeat(ctx, q, "w", 4, time.Minute); err != nil {
		t.Fatal(err)
	}
	enqueue(t, b, "tn_depth", fair.Policy{Weight: 1}, 0, 200)
	// Unmeasured: DefaultCost (5 ms) -> 4 slots x 20 ms / 5 ms = 16.
	if got := pendingLen(t, b); got != 16 {
		t.Fatalf("pending %d before any measurement, want 16", got)
	}
	// Cheap tasks (0.1 ms): 800 wanted, capped at 8 per slot = 32.
	for range 20 {
		work(t, b, 1, func(string) time.Duration { return 100 * time.Microsecond })
	}
	if got := pendingLen(t, b); got != 32 {
		t.Fatalf("pending %d with cheap tasks, want the cap of 32", got)
	}
	// Expensive tasks (100 ms): 0.8 wanted, at least 1 per slot = 4 (what
	// is above it drains without refill).
	for range 60 {
		work(t, b, 1, func(string) time.Duration { return 100 * time.Millisecond })
	}
	if got := pendingLen(t, b); got != 4 {
		t.Fatalf("pending %d with expensive tasks, want 4", got)
	}
}

// TestOverview: the queue's overview agrees with what was enqueued,
// admitted, held and heartbeaten, and names the largest backlogs first.
func TestOverview(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	empty, err := b.d.Overview(ctx, q, 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := (fair.Overview{Queue: q, Top: []fair.Depth{}}); !reflect.DeepEqual(empty, want) {
		t.Fatalf("overview of an empty queue %+v, want %+v", empty, want)
	}

	if err := b.d.Heartbeat(ctx, q, "w1", 3, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.d.Heartbeat(ctx, q, "w2", 2, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int{"tn_ov_a": 4, "tn_ov_b": 9, "tn_ov_c": 6, "tn_ov_d": 1}
	total := 0
	for _, tn := range []string{"tn_ov_a", "tn_ov_b", "tn_ov_c", "tn_ov_d"} {
		enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, sizes[tn])
		total += sizes[tn]
	}
	if _, err := b.d.Hold(ctx, "tn_ov_c", fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	id := dequeue(t, b) // one admitted task starts
	if id == "" {
		t.Fatal("nothing was admitted")
	}
	b.clock.Advance(10 * time.Second) // w1's heartbeat runs out

	o, err := b.d.Overview(ctx, q, 3)
	if err != nil {
		t.Fatal(err)
	}
	if o.Queue != q || o.Workers != 1 || o.WorkerSlots != 2 || o.HeldTenants != 1 {
		t.Errorf("overview %+v: want queue %s, one live worker with 2 slots, one held tenant", o, q)
	}
	if o.Waiting+o.Admitted != total || o.Admitted < 1 || o.Pending != o.Admitted-1 {
		t.Errorf("overview %+v: waiting + admitted should be the %d enqueued, pending all admitted but the one started", o, total)
	}
	// Each tenant's waiting tasks as its own Stats say; the top three in
	// order, and every tenant with a backlog counted.
	var want []fair.Depth
	sum := 0
	for tn := range sizes {
		st := stats(t, b, tn)
		sum += st.Waiting
		if st.Waiting > 0 {
			want = append(want, fair.Depth{TenantID: tn, Waiting: st.Waiting})
		}
	}
	// Redis orders equal backlogs by tenant id, descending.
	slices.SortFunc(want, func(x, y fair.Depth) int {
		return cmp.Or(cmp.Compare(y.Waiting, x.Waiting), cmp.Compare(y.TenantID, x.TenantID))
	})
	if sum != o.Waiting || o.BacklogTenants != len(want) || !reflect.DeepEqual(o.Top, want[:3]) {
		t.Errorf("overview %+v: want waiting %d over %d tenants, top %+v", o, sum, len(want), want[:3])
	}
	if _, err := b.d.Overview(ctx, "bad{queue}", 3); err == nil {
		t.Error("overview of an invalid queue name succeeded")
	}
}

// TestReporterDropsInvalidReport: a report Complete would refuse (an
// invalid tenant id) is dropped by the Reporter, so it cannot fail its
// batch again and again and hold back the valid reports sent with it.
func TestReporterDropsInvalidReport(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	enqueue(t, b, "tn_ok", fair.Policy{Weight: 1, MaxRunning: 1}, 0, 2)
	id := dequeue(t, b)
	done(t, b, id)
	r := b.d.NewReporter(nil)
	r.Report(fair.Report{Queue: q, TaskID: "x", TenantID: "BAD TENANT", Type: "invoice:pdf", Cost: time.Millisecond})
	r.Report(fair.Report{Queue: q, TaskID: id, TenantID: "tn_ok", Type: "invoice:pdf", Cost: time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.Close(ctx) // sends what is queued
	if s := stats(t, b, "tn_ok"); s.Waiting != 0 || s.Admitted != 1 {
		t.Fatalf("after the reports: %d waiting, %d admitted; want the finished task's slot given to the second (0 and 1)", s.Waiting, s.Admitted)
	}
}

// TestDrainLargeBacklogInSteps: a backlog larger than one step is drained
// by several script calls (each removes at most 5,000 waiting tasks, so
// Redis is never held for long), completely, with the tenant's counters
// and its place among the largest backlogs cleared, and nothing of
// another tenant touched.
func TestDrainLargeBacklogInSteps(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	const big = 12_000
	for from := 0; from < big; from += 1000 {
		enqueue(t, b, "tn_big", fair.Policy{Weight: 1}, from, 1000)
	}
	enqueue(t, b, "tn_small", fair.Policy{Weight: 1}, 0, 10)
	before := stats(t, b, "tn_small")
	calls := func() int {
		info, err := b.rdb.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, line := range strings.Split(info, "\r\n") {
			if strings.HasPrefix(line, "cmdstat_evalsha:calls=") || strings.HasPrefix(line, "cmdstat_eval:calls=") {
				v, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(line, "cmdstat_evalsha:calls="), "cmdstat_eval:calls="), ",")
				k, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("commandstats line %q", line)
				}
				n += k
			}
		}
		return n
	}
	was := calls()
	n, err := b.d.Drain(ctx, "tn_big", q)
	if err != nil {
		t.Fatal(err)
	}
	if scripts := calls() - was; scripts < 3 {
		t.Errorf("drained %d waiting tasks in %d script calls, want at least 3 (5,000 at a time)", n.Waiting, scripts)
	}
	if s := stats(t, b, "tn_big"); n.Waiting+n.Admitted != big || s.Waiting != 0 || s.Admitted != 0 {
		t.Fatalf("drained %+v, then %+v; want all %d gone", n, s, big)
	}
	top, _, err := b.d.Top(ctx, q, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range top {
		if d.TenantID == "tn_big" {
			t.Fatalf("drained tenant still among the largest backlogs: %+v", top)
		}
	}
	if after := stats(t, b, "tn_small"); after.Waiting+after.Admitted != before.Waiting+before.Admitted {
		t.Fatalf("the other tenant: %+v, was %+v", after, before)
	}
}

// TestReplaceBeforeTheReportEndsTheFinishedRun: a finished task whose
// worker has not reported it yet (killed after asynq completed it: its
// report waits for the lease) is replaced as any finished one, so that a
// render asked for after an edit runs; the finished run ends there, and its
// late report (which names that run) leaves the new run's slot taken: the
// tenant never runs past its cap. A run admitted by a release before run
// tokens has no token to tell the reports apart: it is answered running
// until its report comes.
func TestReplaceBeforeTheReportEndsTheFinishedRun(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	p := fair.Policy{Weight: 1, MaxRunning: 1}
	replace := func() fair.Result {
		tk := task("tn_rp", 0)
		tk.ReplaceFinished = true
		res, err := b.d.Enqueue(ctx, "tn_rp", p, []fair.Task{tk})
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	finishUnreported := func() (string, string) {
		id := dequeue(t, b)
		run, _ := runHeaderOf(t, b, id)
		// asynq's done script with a retention: the task is kept, completed.
		b.rdb.LRem(ctx, "asynq:{"+q+"}:active", 0, id)
		b.rdb.HSet(ctx, "asynq:{"+q+"}:t:"+id, "state", "completed")
		b.rdb.ZAdd(ctx, "asynq:{"+q+"}:completed", redis.Z{Score: float64(time.Now().Add(time.Hour).Unix()), Member: id})
		return id, run
	}
	if r := replace(); r.Existing {
		t.Fatalf("first enqueue: %+v", r)
	}
	id, first := finishUnreported()
	if first == "" {
		t.Fatal("the admitted task has no run token")
	}
	if r := replace(); r.Existing {
		t.Fatalf("replace before the report: %+v; want a new task", r)
	}
	second := recordedRun(t, b, id)
	if s := stats(t, b, "tn_rp"); s.Admitted != 1 || s.Waiting != 0 || second == "" || second == first {
		t.Fatalf("after the replace: %+v, run %q (first %q); want the one new run admitted under a token of its own", s, second, first)
	}
	// The first run's late report ends nothing: the new run keeps its slot.
	if err := b.d.Complete(ctx, q, []fair.Report{{TaskID: id, TenantID: "tn_rp", Type: "invoice:pdf", Cost: time.Millisecond, Run: first}}); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, "tn_rp"); s.Admitted != 1 || recordedRun(t, b, id) != second {
		t.Fatalf("after the first run's late report: %+v, run %q; want run %q still admitted", s, recordedRun(t, b, id), second)
	}
	if r := replace(); !r.Existing || r.State != "pending" {
		t.Fatalf("replace while the new run is pending: %+v; want it", r)
	}

	// A record of an earlier release: no token.
	_, _ = finishUnreported()
	key := "fair:{" + q + "}:adm"
	meta, err := b.rdb.HGet(ctx, key, id).Result()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(meta, "\t")
	if err := b.rdb.HSet(ctx, key, id, strings.Join(f[:5], "\t")).Err(); err != nil {
		t.Fatal(err)
	}
	if r := replace(); !r.Existing || r.State != "active" {
		t.Fatalf("replace before the report of a run without a token: %+v; want the task, still running", r)
	}
	if err := b.d.Complete(ctx, q, []fair.Report{{TaskID: id, TenantID: "tn_rp", Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	if r := replace(); r.Existing {
		t.Fatalf("replace after the report: %+v; want a new task", r)
	}
	if s := stats(t, b, "tn_rp"); s.Admitted+s.Waiting != 1 {
		t.Fatalf("after the replace: %+v; want the one new run", s)
	}
}

// TestParkedTaskStillRunningAtReleaseComesBack: a parked task whose
// worker had not handed it back to asynq when the hold was lifted (Release
// reports it stuck) comes back to its backlog at the next heartbeat after
// asynq put it in its retry set, instead of waiting there an hour.
func TestParkedTaskStillRunningAtReleaseComesBack(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	ctx := context.Background()
	enqueue(t, b, "tn_late", fair.Policy{Weight: 1}, 0, 3)
	id := dequeue(t, b)
	holdAndPark(t, b, "tn_late", id, fair.Suspended)
	// Released while the worker still has it (asynq: active).
	stuck, err := b.d.Release(ctx, "tn_late", fair.Suspended, q)
	if err != nil || stuck != 1 {
		t.Fatalf("Release = %d stuck, %v; want the running one stuck", stuck, err)
	}
	// Now asynq handles the worker's error: to retry, an hour later.
	toRetry(t, b, id)
	if err := b.d.Heartbeat(ctx, q, "w1", 2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if n, _ := b.rdb.ZCard(ctx, "asynq:{"+q+"}:retry").Result(); n != 0 {
		t.Fatal("parked task still in asynq's retry set after the heartbeat")
	}
	if s := stats(t, b, "tn_late"); s.Parked != 0 || s.Waiting+s.Admitted != 3 {
		t.Fatalf("after the heartbeat: %+v; want the three tasks back, none parked", s)
	}
}

// TestHoldKeepsEnqueueTime: a task a hold moves back to the backlog, and a
// parked one released, keep the time they were enqueued: the tenant's
// oldest wait counts from then, not from the hold.
func TestHoldKeepsEnqueueTime(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	ctx := context.Background()
	enqueue(t, b, "tn_old", fair.Policy{Weight: 1}, 0, 3) // two admitted, one waits
	running := dequeue(t, b)
	b.clock.Advance(10 * time.Second)
	holdAndPark(t, b, "tn_old", running, fair.Suspended)
	toRetry(t, b, running)
	if s := stats(t, b, "tn_old"); s.OldestWait < 10*time.Second {
		t.Fatalf("oldest wait after the hold moved a task back: %v, want at least 10s", s.OldestWait)
	}
	b.clock.Advance(5 * time.Second)
	if _, err := b.d.Release(ctx, "tn_old", fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	// Release admitted what fits (two); what still waits counts from its
	// enqueue 15 s ago.
	if s := stats(t, b, "tn_old"); s.Waiting != 1 || s.OldestWait < 15*time.Second {
		t.Fatalf("after the release: %d waiting, oldest %v; want one, waiting at least 15s", s.Waiting, s.OldestWait)
	}
}

// TestAdmissionOverAFinishedTaskStartsAFreshRecord: a waiting task whose id
// asynq holds as finished by the time it is admitted (a task of that id
// enqueued past the dispatcher, and completed meanwhile) is admitted with a
// fresh asynq record: the finished run's result and completion time do not
// show on the new pending task.
func TestAdmissionOverAFinishedTaskStartsAFreshRecord(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	p := fair.Policy{Weight: 1}
	res := enqueue(t, b, "tn_fresh", p, 0, 2) // #0 admitted, #1 waiting
	waiting := res[1].ID
	key := "asynq:{" + q + "}:t:" + waiting
	if err := b.rdb.HSet(ctx, key, "state", "completed", "result", `{"old":true}`, "completed_at", 1).Err(); err != nil {
		t.Fatal(err)
	}
	b.rdb.ZAdd(ctx, "asynq:{"+q+"}:completed", redis.Z{Score: 1, Member: waiting})

	first := dequeue(t, b)
	done(t, b, first)
	if err := b.d.Complete(ctx, q, []fair.Report{{TaskID: first, TenantID: "tn_fresh", Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	got, err := b.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got["state"] != "pending" || got["msg"] == "" {
		t.Fatalf("admitted task's record %v, want pending with its message", got)
	}
	for _, stale := range []string{"result", "completed_at"} {
		if v, ok := got[stale]; ok {
			t.Errorf("admitted task's record keeps the finished run's %s = %q", stale, v)
		}
	}
}

// TestIdleQueueForgivesDebt: a tenant whose task cost far more than its
// estimate while it ran alone (no other tenant wanted the worker) owes
// nothing once the queue has gone idle: when tenants come back together,
// its tasks run beside theirs, not after an hour of theirs.
func TestIdleQueueForgivesDebt(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	p := fair.Policy{Weight: 1}
	enqueue(t, b, "tn_night", p, 0, 1)
	if got := work(t, b, 1, func(string) time.Duration { return time.Hour }); len(got) != 1 {
		t.Fatalf("the night's task did not run: %v", got)
	}
	// Morning: another tenant's five tasks, then five of the night's.
	enqueue(t, b, "tn_morning", p, 0, 5)
	enqueue(t, b, "tn_night", p, 1, 5)
	order := work(t, b, 10, equalCost)
	night := 0
	for _, tenant := range order[:6] {
		if tenant == "tn_night" {
			night++
		}
	}
	if night < 2 {
		t.Errorf("order %v: the night's tenant ran %d of the first 6 tasks, want its share (its idle-time debt forgiven)", order, night)
	}
}

// enqueueBacklog enqueues tasks 0..n-1 of tenant in batches of 1,000 (an
// enqueue call's bound), weight 1.
func enqueueBacklog(t *testing.T, b bundle, tenant string, n int) {
	t.Helper()
	for from := 0; from < n; from += 1000 {
		enqueue(t, b, tenant, fair.Policy{Weight: 1}, from, min(1000, n-from))
	}
}

// afterHandBack lets pass the time after a park within which the worker's
// hand-back of the task to asynq may still arrive (one and a half leases,
// ParkRun): only after it does a release or heartbeat bring back a parked
// task asynq has let go.
func afterHandBack(b bundle) {
	b.clock.Advance(fair.DefaultLease*3/2 + time.Second)
}

// holdAndPark holds tenant for reason and parks its dequeued task id, as
// a worker does that dequeued it while the hold was being made.
func holdAndPark(t *testing.T, b bundle, tenant, id string, reason fair.Reason) {
	t.Helper()
	ctx := context.Background()
	if _, err := b.d.Hold(ctx, tenant, reason, q); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.d.Park(ctx, q, id, tenant, "invoice:pdf"); err != nil || !ok {
		t.Fatalf("Park = %v, %v", ok, err)
	}
}

// TestAdmissionTakesBacklogsInChunks: one admission call reads each
// backlog ahead a chunk at a time and trims it once at the end. A tenant
// owed more than its first chunk (weight 4 of 1/2/4) reads more, one held
// to a running cap reads no further than the cap, and every tenant's tasks
// still leave in enqueue order, each once, with the rest left waiting in
// order.
func TestAdmissionTakesBacklogsInChunks(t *testing.T) {
	t.Parallel()
	b := setupConfig(t, fair.Config{MinPending: 70, MaxAdmit: 100, PendingPerSlot: 1, PendingTime: time.Microsecond})
	ctx := context.Background()
	pending := "asynq:{" + q + "}:pending"
	// Fill asynq's list so that the enqueues admit nothing, then empty it
	// and let one call admit 70.
	filler := make([]any, 70)
	for i := range filler {
		filler[i] = fmt.Sprintf("filler-%d", i)
	}
	if err := b.rdb.LPush(ctx, pending, filler...).Err(); err != nil {
		t.Fatal(err)
	}
	policies := map[string]fair.Policy{
		"tn_one":    {Weight: 1},
		"tn_two":    {Weight: 2},
		"tn_four":   {Weight: 4},
		"tn_capped": {Weight: 4, MaxRunning: 5},
	}
	for tenant, p := range policies {
		enqueue(t, b, tenant, p, 0, 100)
	}
	if err := b.rdb.Del(ctx, pending).Err(); err != nil {
		t.Fatal(err)
	}
	n, err := b.d.Pump(ctx, q)
	if err != nil || n != 70 {
		t.Fatalf("pump admitted %d (%v), want 70", n, err)
	}
	ids, err := b.rdb.LRange(ctx, pending, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	next := map[string]int{}
	for k := len(ids) - 1; k >= 0; k-- { // asynq takes from the right: admission order
		tenant := tenantOf(ids[k])
		if want := fmt.Sprintf("invoice:pdf:%s:%d", tenant, next[tenant]); ids[k] != want {
			t.Fatalf("admitted %s, want %s next of its tenant", ids[k], want)
		}
		next[tenant]++
	}
	t.Logf("admitted per tenant: %v", next)
	// Shares of 70 over weights 1/2/4/4 with tn_capped held to 5: about
	// 6, 13 and 26 of the 65 left, after the 5.
	if next["tn_capped"] != 5 || next["tn_four"] < 30 || next["tn_one"] < 5 || next["tn_two"] < 12 {
		t.Fatalf("admitted per tenant %v, want tn_capped 5 and the rest by weight", next)
	}
	for tenant := range policies {
		s := stats(t, b, tenant)
		if s.Admitted != next[tenant] || s.Waiting != 100-next[tenant] || s.WaitingByType["invoice:pdf"] != 100-next[tenant] {
			t.Fatalf("%s: admitted %d waiting %d (%v), want %d and %d", tenant, s.Admitted, s.Waiting, s.WaitingByType, next[tenant], 100-next[tenant])
		}
		front, err := b.rdb.LIndex(ctx, "fair:{"+q+"}:b:"+tenant, 0).Result()
		if err != nil || front != fmt.Sprintf("invoice:pdf:%s:%d", tenant, next[tenant]) {
			t.Fatalf("%s: backlog front %q (%v), want its task %d", tenant, front, err, next[tenant])
		}
	}
	// Then everything runs, each task once and every tenant's in order.
	ran := map[string]int{}
	for {
		id := dequeue(t, b)
		if id == "" {
			break
		}
		tenant := tenantOf(id)
		if want := fmt.Sprintf("invoice:pdf:%s:%d", tenant, ran[tenant]); id != want {
			t.Fatalf("ran %s, want %s next of its tenant", id, want)
		}
		ran[tenant]++
		rep := fair.Report{Queue: q, TaskID: id, TenantID: tenant, Type: "invoice:pdf", Cost: time.Millisecond}
		if err := b.d.Complete(ctx, q, []fair.Report{rep}); err != nil {
			t.Fatal(err)
		}
		done(t, b, id)
	}
	for tenant := range policies {
		if ran[tenant] != 100 {
			t.Fatalf("ran %v, want 100 tasks of each tenant", ran)
		}
	}
}
