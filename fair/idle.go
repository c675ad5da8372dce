package fair

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// WakeChannel is the Redis Pub/Sub channel on which the dispatcher
// announces work in queue: an admission that puts tasks into asynq's
// pending list of the queue while it was empty publishes an empty message
// there. A list that already held tasks needs no announcement: a worker
// that is idle found it empty, so it heard of whatever made it non-empty.
func WakeChannel(queue string) string { return "fair:{" + queue + "}:wake" }

// Defaults of IdleOptions.
const (
	// DefaultIdleRecheck is how long an idle worker waits for an
	// announcement before it looks at its queues again all the same: what
	// tasks that reach asynq's lists unannounced wait at most (see
	// IdleWaiter). It is asynq's own default poll interval.
	DefaultIdleRecheck = time.Second
	// DefaultIdlePoll is how long an idle worker waits between looks while
	// its subscription is down.
	DefaultIdlePoll = 20 * time.Millisecond
)

// idlePing is how long a quiet subscription goes before the waiter checks
// it with a PING; a PING unanswered for as long again counts as a lost
// connection.
const idlePing = 5 * time.Second

// IdleOptions configure an IdleWaiter.
type IdleOptions struct {
	// Recheck bounds the wait for an announcement; 0 means
	// DefaultIdleRecheck.
	Recheck time.Duration
	// Poll is the wait while the subscription is down (the worker then
	// polls as asynq does), and how long after a look found a queue empty
	// the waiter answers for it without asking Redis; 0 means
	// DefaultIdlePoll.
	Poll time.Duration
	// Logger receives a line when the subscription is lost and when it is
	// back; nil means slog.Default().
	Logger *slog.Logger
	// FollowFailover says the client is a Redis Sentinel failover client
	// (go-redis's NewFailoverClient, REDIS_URL redis-sentinel://), whose
	// dials reach whichever server the Sentinels name master: the waiter
	// then takes a dial of the client to another address than its
	// subscription's for a failover, and subscribes again there (see
	// followDial). Leave it false for any other client: one that reaches
	// one server at several addresses (a DNS name with several records)
	// would move the subscription for nothing.
	FollowFailover bool
}

// IdleWaiter lets an idle asynq server wait for work to be announced
// instead of polling its queues. asynq's processor looks for a task with
// one dequeue script per queue it serves and, when all are empty, sleeps
// Config.TaskCheckInterval before it looks again: about 150 scripts a second
// per worker at a 20 ms interval, all of them answered "nothing". Installed
// as a go-redis hook on the client the asynq server uses (Hook), the waiter
// notices a look that found every served queue empty and holds the
// processor there until the dispatcher announces an admission into one of
// those queues (WakeChannel, to which Run subscribes) or Recheck passes.
// The server's own TaskCheckInterval then only spaces the looks that follow
// a wait, so it can be a millisecond: a task admitted into an idle queue
// starts within about a millisecond of its announcement, and an idle
// worker looks at its queues once per Recheck.
//
// What reaches asynq's lists without an announcement is found at the next
// recheck at the latest: tasks enqueued before a switch from plain
// dispatch (see SwitchMode), tasks a shutdown put back, and tasks asynq's
// forwarder moves from its scheduled and retry sets when the forwarding
// server could not announce them (a forward by a server with a waiter wakes
// it at once, and it announces the tasks to the others). System tasks, which bypass admission, are announced by
// whoever enqueues them (Dispatcher.Announce). While the subscription is down (Redis
// unreachable, the connection lost), the waiter waits Poll instead of
// Recheck, so the worker polls as it would without it, and once it is
// subscribed again it wakes the processor: an announcement may have been
// missed.
//
// A busy worker gains too: asynq's dequeue tries the served queues one
// script at a time, in a random order by weight, so with work in one class
// every task also pays a round trip to each empty class it tries first.
// While subscribed, the waiter answers for a queue a look found empty
// itself ("nothing", without asking Redis) until an announcement or a
// forward for that queue comes, or Poll passes since that look: what
// reaches the queue unannounced waits at most that long more.
//
// Only asynq's dequeue and forward scripts are looked at (by their keys);
// every other command passes through untouched. The keys are asynq
// v0.26's: an asynq whose dequeue script took other keys would go
// unrecognized, and its server, its TaskCheckInterval lowered by
// worker.IdleWait, would poll every millisecond while idle.
// TestIdleWorkerWaitsForAnnouncedWork counts an idle server's dequeue
// scripts and fails then, so an upgrade of asynq shows it. The waiter assumes one
// asynq server on the client, whose processor is the only caller of the
// dequeue script.
type IdleWaiter struct {
	rdb       redis.UniversalClient
	served    map[string]*queueState
	byChannel map[string]*queueState
	channels  []string
	recheck   time.Duration
	poll      time.Duration
	logger    *slog.Logger

	mu sync.Mutex
	// gen counts announcements, forwards and resubscriptions; woke is
	// closed and replaced at each.
	gen  uint64
	woke chan struct{}
	// live says the subscription to every channel is confirmed; closed
	// that Run returned (waits are then Poll long).
	live, closed bool
	// empty holds the served queues found empty since the processor's
	// current look began, and lookGen is gen when it began.
	empty   map[string]bool
	lookGen uint64
	// stats counts what IdleStats reports.
	stats IdleStats

	// follow says rdb is a Sentinel failover client (FollowFailover), so
	// a connection it dials to another address than the subscription's
	// means the master moved; subAddr
	// is the subscription's address, sub the subscription, and moved that
	// follow closed it for that reason.
	follow  bool
	subAddr string
	sub     *redis.PubSub
	moved   bool
}

// IdleStats counts what an IdleWaiter did since it was made.
type IdleStats struct {
	// Subscribed says the subscription to every served queue's
	// announcements is confirmed now.
	Subscribed bool
	// Woken counts waits an announcement, a forward or a new subscription
	// ended; Rechecked those that ran their full length (Recheck, or Poll
	// while unsubscribed).
	Woken, Rechecked uint64
	// Skipped counts dequeue scripts the waiter answered itself for a queue
	// known to be empty, without a round trip.
	Skipped uint64
}

// Stats returns the waiter's counts.
func (w *IdleWaiter) Stats() IdleStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.stats
	st.Subscribed = w.live
	return st
}

// queueState is what the waiter knows of one served queue.
type queueState struct {
	// gen counts the announcements, forwards and resubscriptions that
	// concern the queue.
	gen uint64
	// emptyAt is when a look that Redis answered found the queue empty
	// (zero: it did not), and emptyGen gen when that look was sent.
	emptyAt  time.Time
	emptyGen uint64
}

// NewIdleWaiter returns a waiter for an asynq server serving queues on
// rdb. It waits Poll until Run has subscribed.
func NewIdleWaiter(rdb redis.UniversalClient, queues []string, opts IdleOptions) *IdleWaiter {
	w := &IdleWaiter{
		rdb:       rdb,
		served:    make(map[string]*queueState, len(queues)),
		byChannel: make(map[string]*queueState, len(queues)),
		recheck:   opts.Recheck,
		poll:      opts.Poll,
		logger:    opts.Logger,
		woke:      make(chan struct{}),
		empty:     make(map[string]bool, len(queues)),
	}
	_, cluster := rdb.(*redis.ClusterClient)
	w.follow = opts.FollowFailover && !cluster
	if w.recheck <= 0 {
		w.recheck = DefaultIdleRecheck
	}
	if w.poll <= 0 {
		w.poll = DefaultIdlePoll
	}
	if w.logger == nil {
		w.logger = slog.Default()
	}
	for _, q := range queues {
		if w.served[q] == nil {
			st := &queueState{}
			w.served[q] = st
			w.byChannel[WakeChannel(q)] = st
			w.channels = append(w.channels, WakeChannel(q))
		}
	}
	return w
}

// Run subscribes to the served queues' announcements and wakes the waiting
// processor at each, until ctx is done; it resubscribes after a lost
// connection. Once it returns, the waiter waits Poll, DefaultIdlePoll at
// most: cancel ctx before shutting the asynq server down, so that its
// processor is not held for a Recheck.
func (w *IdleWaiter) Run(ctx context.Context) {
	stop := context.AfterFunc(ctx, w.shut)
	defer func() {
		stop()
		w.shut()
	}()
	lost := false
	for ctx.Err() == nil {
		err := w.listen(ctx, &lost)
		w.setLive(false)
		if ctx.Err() != nil {
			return
		}
		if w.takeMoved() {
			// Subscribe again at once, to the server the client's other
			// connections now reach.
			continue
		}
		if !lost {
			lost = true
			w.logger.Warn("fair dispatch: lost the subscription to work announcements; idle workers poll until it is back",
				slog.String("error", err.Error()), slog.Duration("poll", w.poll))
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// shut makes every wait from now on Poll long, and ends the current one.
func (w *IdleWaiter) shut() {
	w.mu.Lock()
	w.live, w.closed = false, true
	w.mu.Unlock()
	w.wake(nil)
}

// listen holds one subscription until it fails or ctx is done. lost says
// the previous one failed (logged); listen logs when it is back.
func (w *IdleWaiter) listen(ctx context.Context, lost *bool) error {
	// The dial that Subscribe makes carries the mark, so that the hook
	// learns the subscription's address (followDial).
	ps := w.rdb.Subscribe(context.WithValue(ctx, subscriptionDial{}, w), w.channels...)
	w.mu.Lock()
	w.sub = ps
	w.mu.Unlock()
	// go-redis reads without watching ctx: closing the subscription ends a
	// read at once.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer func() {
		stop()
		w.mu.Lock()
		w.sub, w.subAddr = nil, ""
		w.mu.Unlock()
		_ = ps.Close()
	}()
	ctx = context.WithValue(ctx, subscriptionDial{}, w)
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, idlePing)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged {
				// Quiet for a while: is the subscription still there?
				if err := ps.Ping(ctx); err != nil {
					return err
				}
				pinged = true
				continue
			}
			return err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Count == len(w.channels) {
				if *lost {
					*lost = false
					w.logger.Info("fair dispatch: subscribed to work announcements again")
				}
				w.setLive(true)
				// Announcements made before it was confirmed are lost:
				// look again.
				w.wake(nil)
			}
		case *redis.Message:
			if st := w.byChannel[m.Channel]; st != nil {
				w.wake(st)
			}
		case *redis.Pong:
			pinged = false
		}
	}
}

func (w *IdleWaiter) setLive(live bool) {
	w.mu.Lock()
	w.live = live && !w.closed
	w.mu.Unlock()
}

// wake ends the current wait, and the next one if it has not begun yet,
// and makes the next look at st's queue (nil: every queue) ask Redis.
func (w *IdleWaiter) wake(st *queueState) {
	w.mu.Lock()
	w.gen++
	if st != nil {
		st.gen++
	} else {
		for _, st := range w.served {
			st.gen++
		}
	}
	close(w.woke)
	w.woke = make(chan struct{})
	w.mu.Unlock()
}

// Hook returns the go-redis hook to add to the asynq server's client
// (AddHook) before the server starts.
func (w *IdleWaiter) Hook() redis.Hook { return idleHook{w} }

type idleHook struct{ w *IdleWaiter }

// DialHook lets the waiter follow its Redis server when the client's
// connections move to another address (see followDial).
func (h idleHook) DialHook(next redis.DialHook) redis.DialHook {
	if !h.w.follow {
		return next
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err == nil {
			h.w.followDial(ctx, conn.RemoteAddr().String())
		}
		return conn, err
	}
}

// subscriptionDial marks the ctx of the subscription's own calls, so that
// followDial tells its dial from the client's others.
type subscriptionDial struct{}

// followDial notes a connection the client dialed to remote. The
// subscription's own dial gives its address; another dial to a different
// address means the client now reaches another server: after a Sentinel
// failover go-redis dials the new master and closes its pooled
// connections to the old one, but not the subscription, which the old
// master, still up, would keep (it drops its subscribers only when the
// Sentinel makes it a replica, about 10 s later), so announcements on the
// new master would go unheard until then. The waiter then closes the
// subscription, and Run subscribes again at once, on the new master.
func (w *IdleWaiter) followDial(ctx context.Context, remote string) {
	w.mu.Lock()
	if ctx.Value(subscriptionDial{}) == w {
		w.subAddr = remote
		w.mu.Unlock()
		return
	}
	ps := w.sub
	if ps == nil || w.subAddr == "" || w.subAddr == remote || w.moved {
		w.mu.Unlock()
		return
	}
	from := w.subAddr
	w.moved = true
	w.mu.Unlock()
	w.logger.Info("fair dispatch: the Redis server moved; subscribing to work announcements on the new one",
		slog.String("from", from), slog.String("to", remote))
	_ = ps.Close()
}

// takeMoved reports whether followDial ended the last subscription, and
// clears that.
func (w *IdleWaiter) takeMoved() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.moved
	w.moved = false
	return m
}

func (h idleHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h idleHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	w := h.w
	return func(ctx context.Context, cmd redis.Cmder) error {
		kind, queue := asynqScript(cmd.Args())
		st := w.served[queue]
		if kind == notAsynq || st == nil {
			return next(ctx, cmd)
		}
		var sent uint64
		if kind == dequeueScript {
			var known bool
			if sent, known = w.beginLook(st); known {
				cmd.SetErr(redis.Nil)
				w.foundEmpty(queue)
				return redis.Nil
			}
		}
		err := next(ctx, cmd)
		switch {
		case kind == forwardScript:
			if c, ok := cmd.(*redis.Cmd); ok {
				if n, ferr := c.Int(); ferr == nil && n > 0 {
					w.wake(st)
					w.announceForward(ctx, queue)
				}
			}
		case errors.Is(err, redis.Nil):
			w.noteEmpty(st, sent)
			w.foundEmpty(queue)
		case err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT"):
			// go-redis loads the script and sends it again: same look.
		default:
			w.endLook(st)
		}
		return err
	}
}

// announceForward tells the other servers waiting idle on queue that
// this server's forwarder moved tasks (a retry or scheduled task that came
// due) into its pending list: asynq runs a forwarder in every server, so
// without it they would find the tasks at their next recheck, while this
// server may be busy. A failed publish costs only that wait.
func (w *IdleWaiter) announceForward(ctx context.Context, queue string) {
	if err := w.rdb.Publish(ctx, WakeChannel(queue), "").Err(); err != nil {
		w.logger.DebugContext(ctx, "could not announce forwarded tasks to idle workers; they find them at their next recheck",
			slog.String("queue", queue), slog.String("error", err.Error()))
	}
}

// beginLook is called as the processor asks for a task of st's queue. It
// notes gen when a look at the queues starts: an announcement after it
// makes the wait at the look's end return at once, since the look may have
// missed what was announced. It returns st's gen as the request goes out,
// and whether the queue is known to be empty: found empty by a look Redis
// answered less than Poll ago, with no announcement, forward or
// resubscription for it since that look was sent, while subscribed.
func (w *IdleWaiter) beginLook(st *queueState) (gen uint64, knownEmpty bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.empty) == 0 {
		w.lookGen = w.gen
	}
	known := w.live && !st.emptyAt.IsZero() && st.gen == st.emptyGen && time.Since(st.emptyAt) < w.poll
	if known {
		w.stats.Skipped++
	}
	return st.gen, known
}

// noteEmpty records that Redis found st's queue empty, for a request sent
// at st's gen sent.
func (w *IdleWaiter) noteEmpty(st *queueState, sent uint64) {
	w.mu.Lock()
	st.emptyAt, st.emptyGen = time.Now(), sent
	w.mu.Unlock()
}

// endLook forgets the current look: st's queue had a task, or an error
// ended the look. The queue is not known to be empty either.
func (w *IdleWaiter) endLook(st *queueState) {
	w.mu.Lock()
	clear(w.empty)
	st.emptyAt = time.Time{}
	w.mu.Unlock()
}

// foundEmpty notes queue found empty; once every served queue was, the look
// is over and foundEmpty waits.
func (w *IdleWaiter) foundEmpty(queue string) {
	w.mu.Lock()
	w.empty[queue] = true
	if len(w.empty) < len(w.served) {
		w.mu.Unlock()
		return
	}
	clear(w.empty)
	if w.gen != w.lookGen {
		w.mu.Unlock()
		return
	}
	d, woke := w.poll, w.woke
	switch {
	case w.live:
		d = w.recheck
	case w.closed:
		// Run returned: the server is shutting down, and asynq waits for
		// this look to end. A long Poll must not hold it.
		d = min(d, DefaultIdlePoll)
	}
	w.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	woken := false
	select {
	case <-woke:
		woken = true
	case <-t.C:
	}
	w.mu.Lock()
	if woken {
		w.stats.Woken++
	} else {
		w.stats.Rechecked++
	}
	w.mu.Unlock()
}

// The asynq scripts the waiter looks at.
const (
	notAsynq = iota
	dequeueScript
	forwardScript
)

// asynqScript recognizes asynq's dequeue script (KEYS pending, paused,
// active, lease of one queue) and forward script (KEYS scheduled or retry,
// pending) in a command's arguments, and names the queue.
func asynqScript(args []any) (kind int, queue string) {
	if len(args) < 5 {
		return notAsynq, ""
	}
	name, _ := args[0].(string)
	if name != "evalsha" && name != "eval" && name != "EVALSHA" && name != "EVAL" {
		return notAsynq, ""
	}
	k1, _ := args[3].(string)
	k2, _ := args[4].(string)
	switch nkeys(args[2]) {
	case 4:
		if q, ok := asynqKey(k1, "pending"); ok && k2 == "asynq:{"+q+"}:paused" {
			return dequeueScript, q
		}
	case 2:
		q, ok := asynqKey(k2, "pending")
		if ok && (k1 == "asynq:{"+q+"}:scheduled" || k1 == "asynq:{"+q+"}:retry") {
			return forwardScript, q
		}
	}
	return notAsynq, ""
}

func nkeys(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case int64:
		return int(n)
	case string:
		switch n {
		case "2":
			return 2
		case "4":
			return 4
		}
	}
	return 0
}

// asynqKey returns q of a key "asynq:{q}:suffix".
func asynqKey(key, suffix string) (string, bool) {
	rest, ok := strings.CutPrefix(key, "asynq:{")
	if !ok {
		return "", false
	}
	q, ok := strings.CutSuffix(rest, "}:"+suffix)
	return q, ok && q != ""
}
