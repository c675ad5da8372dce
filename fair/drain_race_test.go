package fair_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// scanHook is a go-redis hook that calls at, with the drain's script call
// it names, right before each call of a drain through asynq's sets and
// pending list ("before") and right after it ("after", with done true
// once that set or list is scanned whole): a test does there what asynq
// does meanwhile (a worker's attempt fails into the retry set, the
// forwarder moves due tasks into the pending list), at a chosen point of
// the drain rather than at a chosen time.
type scanHook struct {
	mu sync.Mutex
	at func(phase, set string, done bool)
}

func (h *scanHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *scanHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *scanHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		set := scanCall(cmd)
		if set == "" {
			return next(ctx, cmd)
		}
		h.mu.Lock()
		at := h.at
		h.mu.Unlock()
		if at != nil {
			at("before", set, false)
		}
		err := next(ctx, cmd)
		if err == nil && at != nil {
			res, _ := cmd.(*redis.Cmd).Val().([]any)
			done := false
			switch {
			case set == "pending" && len(res) == 3:
				done = res[2] == int64(1)
			case len(res) == 2:
				done = res[0] == "0"
			}
			at("after", set, done)
		}
		return err
	}
}

// scanCall returns the set a drain's script call scans ("retry",
// "scheduled" or "pending"), "" for any other command. Those calls carry
// the set as their first argument after the two keys.
func scanCall(cmd redis.Cmder) string {
	args := cmd.Args()
	if len(args) < 6 {
		return ""
	}
	if name, _ := args[0].(string); !strings.EqualFold(name, "evalsha") && !strings.EqualFold(name, "eval") {
		return ""
	}
	switch s, _ := args[5].(string); s {
	case "retry", "scheduled", "pending":
		return s
	}
	return ""
}

// setupScanHook starts a Redis and a dispatcher (with the tasks' id stems)
// whose client runs hook; raw is a client without it, for what asynq does.
func setupScanHook(t *testing.T, hook *scanHook) (b bundle, raw *redis.Client) {
	t.Helper()
	addr := testenv.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	rdb.AddHook(hook)
	raw = redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close(); _ = raw.Close() })
	clock := testenv.NewManualClock(time.Unix(1_700_000_000, 0))
	d := fair.New(rdb, fair.Config{MinPending: 4, Now: clock.Now, TaskIDs: func(tenant string) []string {
		return []string{"invoice:pdf:" + tenant}
	}})
	return bundle{rdb: rdb, d: d, clock: clock}, raw
}

// asynqForward is asynq's forwarder (rdb.forwardCmd of hibiken/asynq
// v0.26, without task groups): the due tasks of the scheduled set, then of
// the retry set, go to the head of the pending list.
const asynqForward = `
for _, set in ipairs({ KEYS[1] .. 'scheduled', KEYS[1] .. 'retry' }) do
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', set, '-inf', ARGV[1], 'LIMIT', 0, 100)) do
    redis.call('LPUSH', KEYS[1] .. 'pending', id)
    redis.call('ZREM', set, id)
    redis.call('HSET', KEYS[1] .. 't:' .. id, 'state', 'pending', 'pending_since', ARGV[2])
  end
end
return 0`

// asynqRetry is what asynq's rdb.Retry does with an attempt that failed:
// the task leaves the active list and its lease for the retry set, due at
// ARGV[2] (Unix seconds).
const asynqRetry = `
redis.call('LREM', KEYS[1] .. 'active', 0, ARGV[1])
redis.call('ZREM', KEYS[1] .. 'lease', ARGV[1])
redis.call('ZADD', KEYS[1] .. 'retry', ARGV[2], ARGV[1])
redis.call('HSET', KEYS[1] .. 't:' .. ARGV[1], 'state', 'retry')
return 0`

const asynqPrefix = "asynq:{" + q + "}:"

// waitIn puts a task of id into asynq's set ("retry" or "scheduled"),
// due already, as asynq keeps it there.
func waitIn(t *testing.T, raw *redis.Client, set, id string) {
	t.Helper()
	ctx := context.Background()
	if err := raw.HSet(ctx, asynqPrefix+"t:"+id, "state", set, "msg", "x").Err(); err != nil {
		t.Fatal(err)
	}
	if err := raw.ZAdd(ctx, asynqPrefix+set, redis.Z{Score: 1, Member: id}).Err(); err != nil {
		t.Fatal(err)
	}
}

func forward(t *testing.T, raw *redis.Client) {
	t.Helper()
	now := time.Now()
	if err := raw.Eval(context.Background(), asynqForward, []string{asynqPrefix}, now.Unix(), now.UnixNano()).Err(); err != nil {
		t.Errorf("asynq's forwarder: %v", err)
	}
}

// TestDrainDiscardsTasksForwardedWhileItScans: a task of the tenant
// waiting in asynq's scheduled or retry set when the drain begins is
// discarded and counted wherever asynq's forwarder moves it while the
// drain scans, also when the forwarder runs right after the drain looked
// through the pending list: waiting tasks only move from those sets into
// the pending list, which the drain scans last.
func TestDrainDiscardsTasksForwardedWhileItScans(t *testing.T) {
	t.Parallel()
	for _, when := range []string{"scheduled", "retry", "pending"} {
		t.Run("after the "+when+" scan", func(t *testing.T) {
			t.Parallel()
			hook := &scanHook{}
			b, raw := setupScanHook(t, hook)
			waitIn(t, raw, "scheduled", "invoice:pdf:acme:s1")
			waitIn(t, raw, "retry", "invoice:pdf:acme:r1")
			waitIn(t, raw, "scheduled", "invoice:pdf:other:s1")
			hook.at = func(phase, set string, done bool) {
				if phase == "after" && set == when && done {
					forward(t, raw)
				}
			}
			n, err := b.d.Drain(context.Background(), "acme", q)
			if err != nil {
				t.Fatal(err)
			}
			if n.Total() != 2 {
				t.Errorf("Drain = %+v; want both waiting tasks discarded", n)
			}
			for _, id := range []string{"invoice:pdf:acme:s1", "invoice:pdf:acme:r1"} {
				if s := asynqState(t, b, id); s != "gone" {
					t.Errorf("task %s, waiting when the drain began, is left in asynq (%s)", id, s)
				}
			}
			if s := asynqState(t, b, "invoice:pdf:other:s1"); s == "gone" {
				t.Error("another tenant's task was discarded")
			}
		})
	}
}

// TestDrainKeepsTheRetryOfATaskRunningWhenItBegan: a task of the tenant
// running when the drain begins is not waiting: should its attempt fail
// while the drain runs, its retry stays, wherever asynq holds it then and
// whenever in the drain the attempt ends (before the drain looks through
// asynq's sets, or after), and the drain counts only what waited. A
// retry that waited when the drain began goes.
func TestDrainKeepsTheRetryOfATaskRunningWhenItBegan(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		phase   string
		forward bool
	}{
		{"fails before the scans", "before", false},
		{"fails before the scans and comes due", "before", true},
		{"fails after the scans", "end", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			hook := &scanHook{}
			b, raw := setupScanHook(t, hook)
			enqueue(t, b, "acme", fair.Policy{Weight: 1}, 0, 1)
			running := dequeue(t, b)
			if running == "" {
				t.Fatal("the tenant's task was not admitted")
			}
			waitIn(t, raw, "retry", "invoice:pdf:acme:r1")
			var once sync.Once
			fail := func() {
				once.Do(func() {
					// The worker reports the failed attempt, and asynq
					// moves it to its retry set (and, due, to pending).
					rep := fair.Report{Queue: q, TaskID: running, TenantID: "acme", Type: "invoice:pdf", Cost: time.Millisecond}
					if err := b.d.Complete(ctx, q, []fair.Report{rep}); err != nil {
						t.Error(err)
					}
					if err := raw.Eval(ctx, asynqRetry, []string{asynqPrefix}, running, 1).Err(); err != nil {
						t.Error(err)
					}
					if c.forward {
						forward(t, raw)
					}
				})
			}
			if c.phase == "before" {
				hook.at = func(phase, _ string, _ bool) {
					if phase == "before" {
						fail()
					}
				}
			}
			n, err := b.d.Drain(ctx, "acme", q)
			if err != nil {
				t.Fatal(err)
			}
			if c.phase == "end" {
				fail()
			}
			if n.Retrying != 1 || n.Total() != 1 {
				t.Errorf("Drain = %+v; want the one retry that waited", n)
			}
			if s := asynqState(t, b, "invoice:pdf:acme:r1"); s != "gone" {
				t.Errorf("the retry that waited when the drain began is left in asynq (%s)", s)
			}
			want := "retry"
			if c.forward {
				want = "pending"
			}
			if s := asynqState(t, b, running); s != want {
				t.Errorf("the retry of the task running when the drain began: asynq holds it as %q, want %q", s, want)
			}
		})
	}
}
