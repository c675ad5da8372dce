package fair_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestHealRepairsNothingInABusyQueue: the heartbeat's repair of what a
// partial loss of Redis's data left (heal in scripts.go) must never act
// while nothing was lost: a waiting task it put back into a backlog while
// it was legitimately elsewhere (admitted, parked, set aside by a drain)
// would run twice. A varied workload runs through the dispatcher and two
// asynq servers on one redis-server: tenants with running caps and
// weights, tasks that fail once and come back through the gate, a tenant
// paused and resumed while its tasks run (parks, kept messages, the
// hand-back window), a drain, a drain cut off between its steps (what it
// set aside waits outside the backlog), a tenant forgotten with a backlog, policy
// changes, and short leases, while a heartbeat runs every few
// milliseconds besides the workers' own. Every beat must repair nothing,
// no tenant may be marked as having lost tasks, and every task must
// succeed exactly once (those of the drained and forgotten tenants at
// most once).
func TestHealRepairsNothingInABusyQueue(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	d := fair.New(rdb, fair.Config{MinPending: 2, PendingPerSlot: 1, PendingTime: time.Microsecond, Lease: time.Second, MaxAdmit: 8, HealEvery: -1})
	rep := d.NewReporter(nil)
	defer rep.Close(ctx)

	var mu sync.Mutex
	succeeded := map[string]int{}
	failed := map[string]bool{}
	paused := map[string]bool{}
	isPaused := func(tn string) bool {
		mu.Lock()
		defer mu.Unlock()
		return paused[tn]
	}
	// What a worker's middleware does (internal/worker: gateRetry, park,
	// ReportCost), with the test's own record of paused tenants.
	var gated, parks atomic.Int64
	handler := func(ctx context.Context, task *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		tn := tenantOf(id)
		run := task.Headers()[fair.RunHeader]
		if n, _ := asynq.GetRetryCount(ctx); n > 0 || run == "" {
			parked, r, err := d.GateRun(ctx, q, id, tn, task.Type())
			if errors.Is(err, fair.ErrDrained) {
				return asynq.RevokeTask
			}
			if err != nil {
				return err
			}
			gated.Add(1)
			if parked {
				parks.Add(1)
				return asynq.RevokeTask
			}
			run = r
		}
		if isPaused(tn) {
			parked, err := d.ParkRun(ctx, q, id, tn, task.Type(), run)
			if errors.Is(err, fair.ErrDrained) {
				return asynq.RevokeTask
			}
			if err == nil && parked {
				parks.Add(1)
				return asynq.RevokeTask
			}
		}
		start := time.Now()
		time.Sleep(time.Duration(len(id)%3) * time.Millisecond)
		mu.Lock()
		fail := strings.HasSuffix(id, "7") && !failed[id]
		if fail {
			failed[id] = true
		} else {
			succeeded[id]++
		}
		mu.Unlock()
		rep.Report(fair.Report{Queue: q, TaskID: id, TenantID: tn, Type: task.Type(), Cost: time.Since(start), Run: run})
		if fail {
			delete(task.Headers(), fair.RunHeader)
			return errors.New("fails once")
		}
		return nil
	}

	logs := &testenv.LogBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srvCtx, stopServe := context.WithCancel(ctx)
	var bg sync.WaitGroup
	var servers []*asynq.Server
	for i := range 2 {
		bg.Go(func() {
			d.Serve(srvCtx, fair.Membership{ID: fmt.Sprintf("w%d", i), Queues: []string{q}, Concurrency: 3, Interval: 20 * time.Millisecond}, logger)
		})
		srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: 3, Queues: map[string]int{q: 1},
			TaskCheckInterval: 5 * time.Millisecond, DelayedTaskCheckInterval: 100 * time.Millisecond,
			RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return 100 * time.Millisecond },
			LogLevel:       asynq.FatalLevel})
		mux := asynq.NewServeMux()
		mux.HandleFunc("invoice:pdf", handler)
		if err := srv.Start(mux); err != nil {
			t.Fatal(err)
		}
		servers = append(servers, srv)
	}
	// A heartbeat every few milliseconds, each one checked.
	var beats, repairs atomic.Int64
	var firstRepair atomic.Value
	bg.Go(func() {
		for srvCtx.Err() == nil {
			healed, err := fair.HeartbeatHealed(d, srvCtx, q, "beater", 1, time.Second)
			if err == nil {
				beats.Add(1)
				lost, _ := rdb.ZRange(srvCtx, "fair:{"+q+"}:lost", 0, -1).Result()
				if healed != (fair.Healed{}) || len(lost) > 0 {
					if repairs.Add(1) == 1 {
						firstRepair.Store(fmt.Sprintf("%+v, tenants marked lost %v", healed, lost))
					}
				}
			}
			time.Sleep(3 * time.Millisecond)
		}
	})
	stopped := false
	stopAll := func() {
		if stopped {
			return
		}
		stopped = true
		for _, s := range servers {
			s.Shutdown()
		}
		stopServe()
		bg.Wait()
	}
	defer stopAll()

	policies := map[string]fair.Policy{}
	var tenants []string
	for i := range 10 {
		tn := fmt.Sprintf("tn_busy%d", i)
		tenants = append(tenants, tn)
		policies[tn] = fair.Policy{Weight: 1 + i%3, MaxRunning: i % 3}
	}
	enqueued := map[string]bool{}
	enq := func(tn string, from, n int) {
		t.Helper()
		var tasks []fair.Task
		for k := from; k < from+n; k++ {
			tasks = append(tasks, task(tn, k))
			enqueued[task(tn, k).Message.ID] = true
		}
		if _, err := d.Enqueue(ctx, tn, policies[tn], tasks); err != nil {
			t.Fatal(err)
		}
	}
	const rounds = 12
	for r := range rounds {
		for i, tn := range tenants {
			enq(tn, r*20, 5+(i+r)%15)
		}
		switch r {
		case 2: // tn_busy1 paused while its tasks are admitted and running
			mu.Lock()
			paused["tn_busy1"] = true
			mu.Unlock()
			if _, err := d.Hold(ctx, "tn_busy1", fair.Paused, q); err != nil {
				t.Fatal(err)
			}
		case 4: // tn_busy2's policy changes: a cap of 1
			policies["tn_busy2"] = fair.Policy{Weight: 3, MaxRunning: 1}
			if err := d.SetPolicy(ctx, "tn_busy2", policies["tn_busy2"], q); err != nil {
				t.Fatal(err)
			}
		case 6: // resumed: its parked tasks come back after the hand-back window
			if _, err := d.Release(ctx, "tn_busy1", fair.Paused, q); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			paused["tn_busy1"] = false
			mu.Unlock()
		case 3: // a drain of a suspended tenant's 6,000 waiting tasks cut off
			// after its first step: 1,000 stay set aside until its mark
			// runs out, past the test's end
			if _, err := d.Hold(ctx, "tn_cut", fair.Suspended, q); err != nil {
				t.Fatal(err)
			}
			var tasks []fair.Task
			for k := range 6000 {
				tasks = append(tasks, task("tn_cut", k))
			}
			if _, err := d.Enqueue(ctx, "tn_cut", fair.Policy{Weight: 1}, tasks); err != nil {
				t.Fatal(err)
			}
			cutDrain(t, bundle{rdb: rdb, d: d}, "tn_cut")
		case 7: // a drain of tn_busy3 while it has tasks waiting and running
			if _, err := d.Drain(ctx, "tn_busy3", q); err != nil {
				t.Fatal(err)
			}
		case 9: // tn_busy4 is erased with a backlog
			if _, err := d.Hold(ctx, "tn_busy4", fair.Suspended, q); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Drain(ctx, "tn_busy4", q); err != nil {
				t.Fatal(err)
			}
			if err := d.Forget(ctx, "tn_busy4", q); err != nil {
				t.Fatal(err)
			}
			tenants = append(tenants[:4], tenants[5:]...)
		}
		time.Sleep(150 * time.Millisecond)
	}
	// Everything enqueued runs (parked tasks come back after the hand-back
	// window, 1.5 leases).
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		missing := 0
		for id := range enqueued {
			tn := tenantOf(id)
			if succeeded[id] == 0 && tn != "tn_busy3" && tn != "tn_busy4" {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tasks never ran", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // beats over the idle queue too
	stopAll()
	mu.Lock()
	defer mu.Unlock()
	for id, n := range succeeded {
		if tenantOf(id) == "tn_cut" {
			t.Errorf("task %s of a suspended tenant ran", id)
		}
		if n != 1 {
			t.Errorf("task %s succeeded %d times", id, n)
		}
		if !enqueued[id] {
			t.Errorf("task %s ran but was never enqueued", id)
		}
	}
	if beats.Load() < 100 {
		t.Fatalf("only %d checked heartbeats ran", beats.Load())
	}
	if n := repairs.Load(); n > 0 {
		t.Errorf("%d of %d heartbeats repaired something in normal operation; the first: %v", n, beats.Load(), firstRepair.Load())
	}
	if s := logs.String(); strings.Contains(s, "repaired dispatch state") {
		t.Errorf("a worker logged a repair:\n%s", s)
	}
	t.Logf("%d tasks, %d failed once, %d gated, %d parked, %d checked heartbeats", len(succeeded), len(failed), gated.Load(), parks.Load(), beats.Load())
}
