package fair_test

import (
	"context"
	"fmt"
	"net"
	"slices"
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

// dequeueCounter counts asynq's dequeue scripts that reach Redis, in all
// and for the queues in others.
type dequeueCounter struct {
	n, others atomic.Int64
}

// others are the queues of idleQueues the tests leave empty.
var others = []string{"asynq:{critical}:pending", "asynq:{low}:pending"}

func (c *dequeueCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *dequeueCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (c *dequeueCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if len(args) > 4 && fmt.Sprint(args[2]) == "4" && strings.HasSuffix(fmt.Sprint(args[3]), "}:pending") {
			c.n.Add(1)
			if slices.Contains(others, fmt.Sprint(args[3])) {
				c.others.Add(1)
			}
		}
		return next(ctx, cmd)
	}
}

// idleRig is an asynq server whose client carries an IdleWaiter, and the
// ids of the tasks its handler ran.
type idleRig struct {
	rdb     *redis.Client
	w       *fair.IdleWaiter
	d       *fair.Dispatcher
	looks   *dequeueCounter
	handled chan string
	stop    func()
}

var idleQueues = map[string]int{"critical": 6, "default": 3, "low": 1}

// startIdleRig starts the server on Redis addr serving idleQueues at a
// TaskCheckInterval of a millisecond, its waiter subscribed through sub
// (nil: the server's own client).
func startIdleRig(t *testing.T, addr string, sub *redis.Client, opts fair.IdleOptions) idleRig {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	if sub == nil {
		sub = rdb
	}
	queues := make([]string, 0, len(idleQueues))
	for q := range idleQueues {
		queues = append(queues, q)
	}
	w := fair.NewIdleWaiter(sub, queues, opts)
	looks := &dequeueCounter{}
	// The counter inside the waiter's hook sees what reaches Redis.
	rdb.AddHook(w.Hook())
	rdb.AddHook(looks)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })

	handled := make(chan string, 4096)
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: 2, Queues: idleQueues,
		TaskCheckInterval: time.Millisecond, DelayedTaskCheckInterval: 100 * time.Millisecond, LogLevel: asynq.FatalLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc("invoice:pdf", func(ctx context.Context, task *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		if d, err := time.ParseDuration(string(task.Payload())); err == nil {
			time.Sleep(d)
		}
		handled <- id
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			// The waiter first, so that the processor is not held for a
			// recheck; then the server must stop at once.
			cancel()
			wg.Wait()
			done := make(chan struct{})
			go func() { srv.Shutdown(); close(done) }()
			select {
			case <-done:
				_ = rdb.Close()
			case <-time.After(30 * time.Second):
				// The client stays open: asynq's subscriber dereferences
				// the nil message of a closed subscription.
				t.Error("the asynq server did not shut down: its processor is still held by the waiter")
			}
		})
	}
	t.Cleanup(stop)
	return idleRig{rdb: rdb, w: w, d: fair.New(rdb, fair.Config{MinPending: 5000, MaxAdmit: 5000}), looks: looks, handled: handled, stop: stop}
}

// startSubscribedRig starts an idleRig on a Redis of its own and returns
// once its waiter knows it is subscribed and the server has had the look
// that follows.
func startSubscribedRig(t *testing.T, opts fair.IdleOptions) idleRig {
	t.Helper()
	r := startIdleRig(t, testenv.Redis(t), nil, opts)
	waitSubscribed(t, r.rdb, "default")
	testenv.WaitFor(t, 30*time.Second, "the waiter to see its subscription confirmed", func() bool { return r.w.Stats().Subscribed })
	time.Sleep(100 * time.Millisecond)
	return r
}

// waitSubscribed waits until the waiter's subscription to queue's
// announcements is on the server.
func waitSubscribed(t *testing.T, rdb *redis.Client, queue string) {
	t.Helper()
	ch := fair.WakeChannel(queue)
	testenv.WaitFor(t, 30*time.Second, "a subscription to "+ch, func() bool {
		n, err := rdb.PubSubNumSub(context.Background(), ch).Result()
		return err == nil && n[ch] > 0
	})
}

// waitHandled waits for the handler to run id; what explains it within the
// wait is named by why.
func waitHandled(t *testing.T, r idleRig, id, why string) {
	t.Helper()
	select {
	case got := <-r.handled:
		if got != id {
			t.Fatalf("handler ran %s, want %s", got, id)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("task %s did not run: %s", id, why)
	}
}

// TestAdmissionIntoEmptyQueueIsAnnounced: the dispatcher publishes on the
// queue's wake channel when it puts work into asynq's empty pending list,
// and not when the list held tasks already.
func TestAdmissionIntoEmptyQueueIsAnnounced(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	ctx := context.Background()
	ps := b.rdb.Subscribe(ctx, fair.WakeChannel(q))
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	next := func() string {
		t.Helper()
		// Every call has a message coming (the test's own mark at least);
		// the bound only turns a missing one into a failure, not a hang.
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		m, err := ps.ReceiveMessage(rctx)
		if err != nil {
			t.Fatalf("no message on the wake channel: %v", err)
		}
		return m.Payload
	}
	// mark publishes a message of the test's own: what next returns before
	// it is what the dispatcher published in between.
	mark := func(s string) {
		t.Helper()
		if err := b.rdb.Publish(ctx, fair.WakeChannel(q), s).Err(); err != nil {
			t.Fatal(err)
		}
	}

	enqueue(t, b, "tn_wake", fair.Policy{Weight: 1}, 0, 1)
	mark("one")
	if got := next(); got != "" {
		t.Fatalf("admission into an empty list published nothing before %q", got)
	}
	if got := next(); got != "one" {
		t.Fatalf("got %q", got)
	}

	enqueue(t, b, "tn_wake", fair.Policy{Weight: 1}, 1, 3)
	mark("two")
	if got := next(); got != "two" {
		t.Fatalf("admission into a list that held a task published %q", got)
	}

	// The workers took everything: the next admission is announced again.
	for pendingLen(t, b) > 0 {
		dequeue(t, b)
	}
	enqueue(t, b, "tn_wake", fair.Policy{Weight: 1}, 4, 1)
	if got := next(); got != "" {
		t.Fatalf("admission into the emptied list: got %q", got)
	}
}

// TestIdleWorkerWaitsForAnnouncedWork: an idle asynq server with the
// waiter looks at its three queues once and then waits; an admission
// wakes it (the recheck is ten minutes away, so nothing else can explain
// the run).
func TestIdleWorkerWaitsForAnnouncedWork(t *testing.T) {
	t.Parallel()
	r := startSubscribedRig(t, fair.IdleOptions{Recheck: 10 * time.Minute})
	before := r.looks.n.Load()
	time.Sleep(500 * time.Millisecond)
	// Polling at asynq's TaskCheckInterval of 1 ms would have sent
	// hundreds; the waiter allows the look its subscription's wake-up
	// starts, and one more if that wake-up came between the samples.
	if n := r.looks.n.Load() - before; n > 2*int64(len(idleQueues)) {
		t.Fatalf("an idle server sent %d dequeue scripts in 500 ms; want at most %d", n, 2*len(idleQueues))
	}
	base := r.w.Stats()

	ctx := context.Background()
	msg := fair.Message{ID: "invoice:pdf:tn_idle:1", Type: "invoice:pdf", Queue: "default", Payload: []byte(`{"tenant_id":"tn_idle"}`), Retry: 3, Timeout: time.Minute}
	if _, err := r.d.Enqueue(ctx, "tn_idle", fair.Policy{Weight: 1}, []fair.Task{{Message: msg}}); err != nil {
		t.Fatal(err)
	}
	waitHandled(t, r, msg.ID, "the admission's announcement did not wake the idle server")

	// Again, now that the server has been woken once.
	msg.ID = "invoice:pdf:tn_idle:2"
	if _, err := r.d.Enqueue(ctx, "tn_idle", fair.Policy{Weight: 1}, []fair.Task{{Message: msg}}); err != nil {
		t.Fatal(err)
	}
	waitHandled(t, r, msg.ID, "the second announcement did not wake the idle server")
	// The second announcement may come before the server waits again.
	if st := r.w.Stats(); !st.Subscribed || st.Woken <= base.Woken || st.Rechecked != base.Rechecked {
		t.Errorf("stats %+v, %+v before the enqueues: want subscribed, woken, no wait run out", st, base)
	}
}

// TestForwardWakesTheIdleWorker: a task asynq's own forwarder moves into
// the pending list (a scheduled task, a retry) is not announced by the
// dispatcher; the server whose forwarder moved it is woken by the hook.
func TestForwardWakesTheIdleWorker(t *testing.T) {
	t.Parallel()
	r := startSubscribedRig(t, fair.IdleOptions{Recheck: 10 * time.Minute})
	c := asynq.NewClientFromRedisClient(r.rdb)
	if _, err := c.Enqueue(asynq.NewTask("invoice:pdf", nil), asynq.TaskID("scheduled"), asynq.Queue("low"), asynq.ProcessIn(time.Second)); err != nil {
		t.Fatal(err)
	}
	waitHandled(t, r, "scheduled", "the forward into the pending list did not wake the idle server")
}

// TestForwardIsAnnouncedToOtherServers: asynq runs a forwarder in every
// server, and the one that moves a due task into the pending list may be
// busy; its hook announces the forward on the queue's wake channel, so
// that the other idle servers look at once, not at their next recheck.
func TestForwardIsAnnouncedToOtherServers(t *testing.T) {
	t.Parallel()
	r := startSubscribedRig(t, fair.IdleOptions{Recheck: 10 * time.Minute})
	ctx := context.Background()
	sub := r.rdb.Subscribe(ctx, fair.WakeChannel("low"))
	t.Cleanup(func() { _ = sub.Close() })
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	c := asynq.NewClientFromRedisClient(r.rdb)
	// Straight into asynq's scheduled set: no admission announces it.
	if _, err := c.Enqueue(asynq.NewTask("invoice:pdf", nil), asynq.TaskID("due"), asynq.Queue("low"), asynq.ProcessIn(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sub.Channel():
	case <-time.After(30 * time.Second):
		t.Fatal("the forward of a due task was not announced to the other servers")
	}
	waitHandled(t, r, "due", "the forward did not wake the idle server")
}

// TestResubscribedWaiterLooksAgain: announcements made while the
// subscription was down are lost, so a waiter that subscribes again wakes
// the server; a task that reached the queue unannounced is found then.
func TestResubscribedWaiterLooksAgain(t *testing.T) {
	t.Parallel()
	r := startSubscribedRig(t, fair.IdleOptions{Recheck: 10 * time.Minute, Poll: 10 * time.Minute})
	c := asynq.NewClientFromRedisClient(r.rdb)
	if _, err := c.Enqueue(asynq.NewTask("invoice:pdf", nil), asynq.TaskID("unannounced"), asynq.Queue("default")); err != nil {
		t.Fatal(err)
	}
	if err := r.rdb.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	waitHandled(t, r, "unannounced", "the waiter did not wake the server after subscribing again")
}

// TestWaiterPollsWhileUnsubscribed: while the waiter cannot subscribe
// (here its Redis is gone for good), the server polls every Poll, as it
// would without the waiter.
func TestWaiterPollsWhileUnsubscribed(t *testing.T) {
	t.Parallel()
	addr := testenv.Redis(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	_ = l.Close()
	dead := redis.NewClient(&redis.Options{Addr: closed, MaxRetries: -1})
	t.Cleanup(func() { _ = dead.Close() })
	r := startIdleRig(t, addr, dead, fair.IdleOptions{Recheck: 10 * time.Minute, Poll: 10 * time.Millisecond})
	testenv.WaitFor(t, 30*time.Second, "a wait that ran out (polling)", func() bool { return r.w.Stats().Rechecked > 0 })
	c := asynq.NewClientFromRedisClient(r.rdb)
	if _, err := c.Enqueue(asynq.NewTask("invoice:pdf", nil), asynq.TaskID("polled"), asynq.Queue("critical")); err != nil {
		t.Fatal(err)
	}
	waitHandled(t, r, "polled", "the server did not poll while its waiter had no subscription")
	if st := r.w.Stats(); st.Subscribed || st.Skipped != 0 {
		t.Errorf("stats %+v: want unsubscribed, nothing skipped", st)
	}
}

// admitMany admits n tasks of one tenant into default at once (one
// announcement), each handled after sleeping for the payload's duration.
func admitMany(t *testing.T, r idleRig, n int, payload string) {
	t.Helper()
	ts := make([]fair.Task, n)
	for i := range ts {
		ts[i] = fair.Task{Message: fair.Message{ID: fmt.Sprintf("busy:%d", i), Type: "invoice:pdf", Queue: "default",
			Payload: []byte(payload), Retry: 3, Timeout: time.Minute}}
	}
	if _, err := r.d.Enqueue(context.Background(), "tn_busy", fair.Policy{Weight: 1}, ts); err != nil {
		t.Fatal(err)
	}
}

// TestBusyWorkerSkipsKnownEmptyQueues: with work in default only, asynq
// tries critical and low before it two times in three; a queue a look
// found empty is answered by the waiter, without a round trip, until an
// announcement for it or Poll (ten minutes here).
func TestBusyWorkerSkipsKnownEmptyQueues(t *testing.T) {
	t.Parallel()
	r := startSubscribedRig(t, fair.IdleOptions{Recheck: 10 * time.Minute, Poll: 10 * time.Minute})
	before := r.looks.others.Load()
	const n = 300
	admitMany(t, r, n, "")
	for range n {
		select {
		case <-r.handled:
		case <-time.After(30 * time.Second):
			t.Fatal("the admitted tasks did not all run")
		}
	}
	// Asking Redis each time would be about one script per task (288 for
	// 300 when this was written); the subscription's first look and one
	// after the announcement may ask.
	if got := r.looks.others.Load() - before; got > 4 {
		t.Fatalf("%d dequeue scripts for the empty queues reached Redis while %d tasks of default ran; want at most 4", got, n)
	}
	if st := r.w.Stats(); st.Skipped < n/4 {
		t.Errorf("stats %+v: want the skipped dequeues counted", st)
	}
}

// TestBusyWorkerFindsUnannouncedWorkWithinPoll: a task that reaches a queue
// the waiter knows to be empty without an announcement (a system task
// here) is looked for again Poll after that queue was found empty, while
// the worker is busy with another queue: it runs long before that queue's
// work is done.
func TestBusyWorkerFindsUnannouncedWorkWithinPoll(t *testing.T) {
	t.Parallel()
	r := startSubscribedRig(t, fair.IdleOptions{Recheck: 10 * time.Minute, Poll: 20 * time.Millisecond})
	// 1,000 tasks of 2 ms on two slots: at least a second of work.
	const n = 1000
	admitMany(t, r, n, "2ms")
	for i := range 10 {
		select {
		case <-r.handled:
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of the %d admitted tasks ran: the admission's announcement did not wake the idle server", i, n)
		}
	}
	c := asynq.NewClientFromRedisClient(r.rdb)
	if _, err := c.Enqueue(asynq.NewTask("invoice:pdf", nil), asynq.TaskID("system"), asynq.Queue("critical")); err != nil {
		t.Fatal(err)
	}
	for i := 10; i < n+1; i++ {
		select {
		case id := <-r.handled:
			if id == "system" {
				if i > n/2 {
					t.Fatalf("the unannounced task ran only after %d of default's %d tasks", i, n)
				}
				return
			}
		case <-time.After(30 * time.Second):
			t.Fatal("tasks stopped running")
		}
	}
	t.Fatal("the unannounced task in critical never ran")
}

// TestRefusedAnnouncementKeepsTheAdmission: an announcement is a hint. A
// Redis whose ACL refuses PUBLISH still takes the task into the backlog
// and admits it (idle workers find it at their next recheck).
func TestRefusedAnnouncementKeepsTheAdmission(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	if err := b.rdb.Do(context.Background(), "ACL", "SETUSER", "default", "-publish").Err(); err != nil {
		t.Fatal(err)
	}
	enqueue(t, b, "tn_acl", fair.Policy{Weight: 1}, 0, 1)
	if n := pendingLen(t, b); n != 1 {
		t.Fatalf("%d tasks admitted while PUBLISH is refused; want 1", n)
	}
}
