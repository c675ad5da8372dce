package fair_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestMessageDecodesInAsynq admits a task written by the dispatcher and
// checks that asynq's inspector and a real asynq server read every field of
// it: asynq keeps its message encoder internal, so this is what catches a
// format change in an asynq upgrade.
func TestMessageDecodesInAsynq(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	d := fair.New(rdb, fair.Config{MinPending: 10})

	msg := fair.Message{ID: "invoice:pdf:tn_asynq:7", Type: "invoice:pdf", Queue: "default",
		Payload: []byte(`{"tenant_id":"tn_asynq","invoice_id":7}`), Retry: 7, Timeout: 90 * time.Second, Retention: 2 * time.Hour}
	if _, err := d.Enqueue(ctx, "tn_asynq", fair.Policy{Weight: 1}, []fair.Task{{Message: msg}}); err != nil {
		t.Fatal(err)
	}
	ins := asynq.NewInspectorFromRedisClient(rdb)
	info, err := ins.GetTaskInfo("default", msg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != msg.Type || string(info.Payload) != string(msg.Payload) || info.Queue != "default" ||
		info.MaxRetry != 7 || info.Timeout != 90*time.Second || info.Retention != 2*time.Hour || info.State != asynq.TaskStatePending {
		t.Fatalf("asynq reads %+v", info)
	}
	decoded, err := fair.DecodeMessage(msg.Encode())
	if err != nil || decoded.ID != msg.ID || decoded.Retry != 7 || decoded.Timeout != msg.Timeout || decoded.Retention != msg.Retention {
		t.Fatalf("DecodeMessage = %+v, %v", decoded, err)
	}

	got := make(chan string, 1)
	// asynq sets the handler's deadline to the task's timeout from when
	// it dequeued the task: after started, before the handler looks.
	started := time.Now()
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: 1, Queues: map[string]int{"default": 1},
		TaskCheckInterval: 10 * time.Millisecond, LogLevel: asynq.FatalLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc("invoice:pdf", func(ctx context.Context, task *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		deadline, _ := ctx.Deadline()
		if deadline.Before(started.Add(90*time.Second)) || deadline.After(time.Now().Add(90*time.Second)) {
			t.Errorf("handler deadline %v after the server started, in %v; want the task's 90s timeout from its dequeue", deadline.Sub(started), time.Until(deadline))
		}
		got <- id + " " + string(task.Payload())
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	select {
	case s := <-got:
		if s != msg.ID+" "+string(msg.Payload) {
			t.Fatalf("handler got %q", s)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("asynq did not run the admitted task")
	}
	// Completed with its retention: asynq keeps it, as it would its own.
	deadline := time.Now().Add(60 * time.Second)
	for {
		info, err := ins.GetTaskInfo("default", msg.ID)
		if err == nil && info.State == asynq.TaskStateCompleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task state %v, %v; want completed", info, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFairWithAsynqServer runs a noisy and a quiet tenant through a real
// asynq server whose handler reports to the dispatcher: the quiet tenant's
// task, enqueued behind 300 noisy ones, runs after about the pending depth
// (20 ms of 2 ms tasks per slot: about 20 tasks), not after the 300.
func TestFairWithAsynqServer(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	d := fair.New(rdb, fair.Config{})
	rep := d.NewReporter(nil)
	defer rep.Close(ctx)
	srvCtx, stop := context.WithCancel(ctx)
	var serving sync.WaitGroup
	serving.Go(func() {
		d.Serve(srvCtx, fair.Membership{ID: "w1", Queues: []string{"default"}, Concurrency: 2, Interval: 100 * time.Millisecond}, nil)
	})
	defer func() { stop(); serving.Wait() }()

	var mu sync.Mutex
	var order []string
	// No task runs until the quiet tenant's task was enqueued: what ran
	// before it must not depend on how long this goroutine took to get
	// there on a loaded machine.
	gate := make(chan struct{})
	var openGate sync.Once
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: 2, Queues: map[string]int{"default": 1},
		TaskCheckInterval: 5 * time.Millisecond, LogLevel: asynq.FatalLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc("invoice:pdf", func(ctx context.Context, task *asynq.Task) error {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		start := time.Now()
		id, _ := asynq.GetTaskID(ctx)
		time.Sleep(2 * time.Millisecond)
		tenant := tenantOf(id)
		mu.Lock()
		order = append(order, tenant)
		mu.Unlock()
		rep.Report(fair.Report{Queue: "default", TaskID: id, TenantID: tenant, Type: task.Type(), Cost: time.Since(start)})
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	defer openGate.Do(func() { close(gate) }) // before Shutdown, should the test stop early

	b := bundle{rdb: rdb, d: d}
	enqueue(t, b, "tn_noisy", fair.Policy{Weight: 1}, 0, 300)
	time.Sleep(20 * time.Millisecond)
	enqueue(t, b, "tn_quiet", fair.Policy{Weight: 1}, 0, 1)
	openGate.Do(func() { close(gate) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(order)
		mu.Unlock()
		if n == 301 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 301 tasks ran", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, tenant := range order {
		if tenant == "tn_quiet" {
			if i > 60 {
				t.Fatalf("quiet tenant's task ran %dth of 301", i+1)
			}
			return
		}
	}
	t.Fatal("quiet tenant's task never ran")
}

// TestScriptsRunOnMiniredis: the embedded development stack runs on
// miniredis; the dispatcher's scripts must work there too.
func TestScriptsRunOnMiniredis(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	b := bundle{rdb: rdb, d: fair.New(rdb, fair.Config{MinPending: 1})}
	enqueue(t, b, "tn_mini", fair.Policy{Weight: 2, MaxRunning: 1, MaxWaiting: 10}, 0, 3)
	if order := work(t, b, 5, equalCost); len(order) != 3 {
		t.Fatalf("ran %v, want 3 tasks", order)
	}
	enqueue(t, b, "tn_mini", fair.Policy{Weight: 1}, 10, 3)
	if _, err := b.d.Hold(ctx, "tn_mini", fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	if _, err := b.d.Release(ctx, "tn_mini", fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	if _, err := b.d.Stats(ctx, "tn_mini", q); err != nil {
		t.Fatal(err)
	}
	if err := b.d.Heartbeat(ctx, q, "w", 2, time.Second); err != nil {
		t.Fatal(err)
	}
	if n, err := b.d.Drain(ctx, "tn_mini", q); err != nil || n.Total() != 3 {
		t.Fatalf("drain = %+v, %v", n, err)
	}

	// A park under a run, its release once the hand-back time is over (a
	// lease of 100 ms: 150 ms), back between an older and a newer waiting
	// task (enqueued by clocks a minute and two ahead).
	lease := fair.Config{MinPending: 1, Lease: 100 * time.Millisecond}
	ahead := func(d time.Duration) *fair.Dispatcher {
		c := lease
		c.Now = func() time.Time { return time.Now().Add(d) }
		return fair.New(rdb, c)
	}
	b = bundle{rdb: rdb, d: fair.New(rdb, lease)}
	const tn = "tn_mini_park"
	p := fair.Policy{Weight: 1, MaxRunning: 1}
	if _, err := ahead(time.Minute).Enqueue(ctx, tn, p, []fair.Task{task(tn, 1)}); err != nil {
		t.Fatal(err)
	}
	id := dequeue(t, b)
	enqueue(t, b, tn, p, 0, 1)
	if _, err := ahead(2*time.Minute).Enqueue(ctx, tn, p, []fair.Task{task(tn, 2)}); err != nil {
		t.Fatal(err)
	}
	// The worker read the run from the message it dequeued: the hold
	// blanks it in asynq's copy of a task being run.
	run, _ := runHeaderOf(t, b, id)
	if _, err := b.d.Hold(ctx, tn, fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.d.ParkRun(ctx, q, id, tn, "invoice:pdf", run); err != nil || !ok || run == "" {
		t.Fatalf("ParkRun(%q) = %v, %v", run, ok, err)
	}
	done(t, b, id)
	time.Sleep(200 * time.Millisecond)
	if _, err := b.d.Release(ctx, tn, fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	order := runAll(t, b, tn)
	if want := []string{task(tn, 0).Message.ID, id, task(tn, 2).Message.ID}; !slices.Equal(order, want) {
		t.Fatalf("ran %v, want %v", order, want)
	}
}
