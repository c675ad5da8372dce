package fair_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// skewedProcess returns a dispatcher on a Redis client of its own, in a
// process whose clock is off by skew (NTP lost, a VM resumed, a clock
// stepped back): the configuration leaves Config.Now unset, as the
// binaries do. A test cannot move the process's clock, so the client
// moves every time the process sends: the scripts' common "now" (ARGV[1]
// in ms, ARGV[2] in ns; see scripts.go) is shifted by skew when it is
// given. Taking it from Redis's clock instead is what keeps the process's
// clock out.
func skewedProcess(t *testing.T, addr string, skew time.Duration) (*fair.Dispatcher, *redis.Client) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	rdb.AddHook(skewHook{skew})
	cfg := fair.Config{MinPending: 1, PendingPerSlot: 1, PendingTime: time.Microsecond}
	return fair.New(rdb, cfg), rdb
}

// skewHook shifts the time a script call carries by skew.
type skewHook struct{ skew time.Duration }

func (h skewHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h skewHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.shift(c)
		}
		return next(ctx, cmds)
	}
}

func (h skewHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.shift(cmd)
		return next(ctx, cmd)
	}
}

// shift moves ARGV[1] (ms) and ARGV[2] (ns) of an EVAL or EVALSHA by the
// skew, when they hold a time.
func (h skewHook) shift(cmd redis.Cmder) {
	if n := cmd.Name(); n != "evalsha" && n != "eval" {
		return
	}
	args := cmd.Args()
	if len(args) < 3 {
		return
	}
	nkeys, err := strconv.Atoi(fmt.Sprint(args[2]))
	if err != nil || len(args) < 3+nkeys+2 {
		return
	}
	i := 3 + nkeys
	ms, err1 := strconv.ParseInt(fmt.Sprint(args[i]), 10, 64)
	ns, err2 := strconv.ParseInt(fmt.Sprint(args[i+1]), 10, 64)
	if err1 != nil || err2 != nil {
		return // empty: the script reads Redis's clock
	}
	args[i] = strconv.FormatInt(ms+h.skew.Milliseconds(), 10)
	args[i+1] = strconv.FormatInt(ns+h.skew.Nanoseconds(), 10)
}

// TestWorkersWithSkewedClocksAllCount: three workers whose clocks are a
// minute apart heartbeat (Serve's 5 s ttl): each of them is alive, and
// the pending depth is sized for all their slots. A heartbeat must not
// drop another worker because its own clock is ahead.
func TestWorkersWithSkewedClocksAllCount(t *testing.T) {
	t.Parallel()
	addr := testenv.Redis(t)
	ctx := context.Background()
	right, rdb := skewedProcess(t, addr, 0)
	slow, _ := skewedProcess(t, addr, -time.Minute)
	fast, _ := skewedProcess(t, addr, time.Minute)
	for _, w := range []struct {
		d  *fair.Dispatcher
		id string
	}{{right, "w-right"}, {slow, "w-slow"}, {fast, "w-fast"}} {
		if err := w.d.Heartbeat(ctx, q, w.id, 4, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	capSum, err := rdb.Get(ctx, "fair:{"+q+"}:cap").Int()
	if err != nil {
		t.Fatal(err)
	}
	o, err := right.Overview(ctx, q, 1)
	if err != nil {
		t.Fatal(err)
	}
	if capSum != 12 || o.Workers != 3 || o.WorkerSlots != 12 {
		t.Fatalf("after three workers' heartbeats: cap %d, overview %d workers with %d slots; want 12, 3 and 12", capSum, o.Workers, o.WorkerSlots)
	}
}

// TestDrainBySlowClockNotUndoneByHeartbeat: an operator's drain (a tenant
// deletion) runs in a process whose clock is two minutes behind a
// worker's. The worker's heartbeat between the drain's steps must not
// take the drain's mark ("expires a minute after the last step") for one
// whose caller went away and put the tasks the drain set aside back into
// the backlog: they would be admitted and run for a tenant being deleted.
func TestDrainBySlowClockNotUndoneByHeartbeat(t *testing.T) {
	t.Parallel()
	addr := testenv.Redis(t)
	ctx := context.Background()
	slow, rdb := skewedProcess(t, addr, -2*time.Minute)
	worker, _ := skewedProcess(t, addr, 0)
	b := bundle{rdb: rdb, d: slow}
	const tn = "tn_skew_drain"
	const old = 6002
	enqueueBacklog(t, b, tn, old)
	var fired atomic.Bool
	rdb.AddHook(afterDrainStep{tenant: tn, fired: &fired, fn: func() {
		if err := worker.Heartbeat(ctx, q, "w1", 1, 5*time.Second); err != nil {
			t.Error(err)
		}
	}})
	n, err := slow.Drain(ctx, tn, q)
	if err != nil || !fired.Load() {
		t.Fatalf("Drain = %+v, %v (heartbeat between its steps: %v)", n, err, fired.Load())
	}
	s, err := worker.Stats(ctx, tn, q)
	if err != nil {
		t.Fatal(err)
	}
	if s[0].Waiting+s[0].Admitted != 0 || n.Total() != old {
		t.Fatalf("after the drain: it discarded %d of %d; %d waiting and %d admitted; want all discarded, none left", n.Total(), old, s[0].Waiting, s[0].Admitted)
	}
}
