package fair_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
)

// previousReleaseHeartbeat is what the heartbeat of the release before
// kept messages (dd8f143, fair/scripts.go) does with parked tasks, copied
// from its scripts: it walks P..'parkedt' and, for each tenant not held,
// reads every record of P..'parked:'..tenant; a task asynq has in its
// retry set or pending list goes back to the backlog, one asynq holds as
// active stays, and the record of any other is dropped (HDEL). Its
// Release (holdScript) runs the same releaseParked.
//
//	KEYS[1] the dispatcher's prefix of the queue, KEYS[2] asynq's.
var previousReleaseHeartbeat = redis.NewScript(`
local P, A = KEYS[1], KEYS[2]
local SEP = '\t'
local NOW = tonumber(ARGV[1])
local function num(v, def)
  local n = tonumber(v or '')
  if n == nil then return def end
  return n
end
local function tkey(t) return P .. 't:' .. t end
local function fields(s, k)
  local out, pos = {}, 1
  for _ = 1, k do
    local i = string.find(s, SEP, pos, true)
    if not i then break end
    out[#out + 1] = string.sub(s, pos, i - 1)
    pos = i + 1
  end
  out[#out + 1] = string.sub(s, pos)
  return out
end
local function countWaiting(t, typ, d)
  redis.call('HINCRBY', tkey(t), 'n:' .. typ, d)
  if tonumber(redis.call('ZINCRBY', P .. 'depth', d, t)) <= 0 then
    redis.call('ZREM', P .. 'depth', t)
  end
end
local function wait(t, id, typ, msg, enq)
  redis.call('HSET', P .. 'msg', id, typ .. SEP .. t .. SEP .. enq .. SEP .. msg)
  redis.call('LPUSH', P .. 'b:' .. t, id)
  countWaiting(t, typ, 1)
end
local function held(t)
  local h = redis.call('HGET', P .. 'hold', t)
  return h and h ~= ''
end
local function releaseParked(t)
  local released, active = 0, 0
  local parked = redis.call('HGETALL', P .. 'parked:' .. t)
  for i = #parked - 1, 1, -2 do
    local id, pf = parked[i], fields(parked[i + 1], 1)
    local typ, enq = pf[1], num(pf[2], NOW)
    local key = A .. 't:' .. id
    local st = redis.call('HGET', key, 'state')
    if st == 'retry' or st == 'pending' then
      local msg = redis.call('HGET', key, 'msg')
      if st == 'retry' then
        redis.call('ZREM', A .. 'retry', id)
      else
        redis.call('LREM', A .. 'pending', 1, id)
      end
      redis.call('DEL', key)
      redis.call('HDEL', P .. 'parked:' .. t, id)
      wait(t, id, typ, msg, enq)
      released = released + 1
    elseif st == 'active' then
      active = active + 1
    else
      redis.call('HDEL', P .. 'parked:' .. t, id)
    end
  end
  if active == 0 then redis.call('SREM', P .. 'parkedt', t) end
  return released, active
end
for _, t in ipairs(redis.call('SMEMBERS', P .. 'parkedt')) do
  if not held(t) then releaseParked(t) end
end
return 0
`)

const (
	fairP  = "fair:{" + q + "}:"
	asynqP = "asynq:{" + q + "}:"
)

// oldHeartbeat runs the previous release's heartbeat walk of parked tasks.
func oldHeartbeat(t *testing.T, b bundle) {
	t.Helper()
	now := fmt.Sprint(b.clock.Now().UnixMilli())
	if err := previousReleaseHeartbeat.Run(context.Background(), b.rdb, []string{fairP, asynqP}, now).Err(); err != nil {
		t.Fatalf("the previous release's heartbeat: %v", err)
	}
}

// parkedWhere reports where the dispatcher holds a parked record of task
// id of tenant tn: in kept: (listed in keptt) and in parked: (listed in
// parkedt).
func parkedWhere(t *testing.T, b bundle, tn, id string) (kept, keptT, parked, parkedT bool) {
	t.Helper()
	ctx := context.Background()
	kept = b.rdb.HExists(ctx, fairP+"kept:"+tn, id).Val()
	keptT = b.rdb.SIsMember(ctx, fairP+"keptt", tn).Val()
	parked = b.rdb.HExists(ctx, fairP+"parked:"+tn, id).Val()
	parkedT = b.rdb.SIsMember(ctx, fairP+"parkedt", tn).Val()
	return
}

// requireKeptOnly fails unless task id of tn is parked with its message
// under the keys the previous release never reads, and not in parked: or
// parkedt, where that release's heartbeat would drop it.
func requireKeptOnly(t *testing.T, b bundle, tn, id string) {
	t.Helper()
	kept, keptT, parked, parkedT := parkedWhere(t, b, tn, id)
	if !kept || !keptT || parked || parkedT {
		t.Fatalf("parked task %s of %s: in kept: %v, keptt %v, parked: %v, parkedt %v; want only in kept: and keptt",
			id, tn, kept, keptT, parked, parkedT)
	}
}

// parkHeld enqueues a task of tn, dequeues it, holds tn and parks the
// task as a worker does, which then hands it back (asynq.RevokeTask:
// asynq deletes it). It returns the task's id.
func parkHeld(t *testing.T, b bundle, tn string) string {
	t.Helper()
	enqueue(t, b, tn, fair.Policy{Weight: 1}, 0, 1)
	id := dequeue(t, b)
	if id == "" || tenantOf(id) != tn {
		t.Fatalf("dequeued %q, want the task of %s", id, tn)
	}
	lastAttempt(t, b, id)
	holdAndPark(t, b, tn, id, fair.Suspended)
	done(t, b, id)
	return id
}

// TestKeptParkedTaskIsOutOfThePreviousReleasesSight: a task parked with
// its message (Park of a held tenant's task, Gate of a retry at the
// running cap) is recorded under P..'kept:'..tenant and P..'keptt' only,
// never under P..'parked:'..tenant or P..'parkedt', which the previous
// release's heartbeat and Release read and where they drop a record whose
// task asynq no longer has. The previous release's heartbeat leaves it;
// this release still finds it by its id (Parked, an enqueue of the same
// id), counts it, releases it, drains it and forgets it.
func TestKeptParkedTaskIsOutOfThePreviousReleasesSight(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()

	// Parked while its tenant is held; found and released.
	const held = "tn_up_held"
	id := parkHeld(t, b, held)
	requireKeptOnly(t, b, held, id)
	if _, err := b.rdb.HDel(ctx, fairP+"hold", held).Result(); err != nil {
		t.Fatal(err)
	}
	oldHeartbeat(t, b) // as the previous release's Release does, hold cleared
	if _, err := b.rdb.HSet(ctx, fairP+"hold", held, "s").Result(); err != nil {
		t.Fatal(err)
	}
	requireKeptOnly(t, b, held, id)
	if s := stats(t, b, held); s.Parked != 1 {
		t.Fatalf("stats of %s: %+v; want 1 parked", held, s)
	}
	w, ok, err := b.d.Parked(ctx, held, id, q)
	if err != nil || !ok || w.ID != id || w.Message.ID != id {
		t.Fatalf("Parked(%s) = %+v, %v, %v; want the kept task", id, w, ok, err)
	}
	res := enqueue(t, b, held, fair.Policy{Weight: 1}, 0, 1)
	if !res[0].Existing || res[0].State != "pending" {
		t.Fatalf("enqueue of the parked task's id: %+v; want it found waiting", res[0])
	}
	afterHandBack(b)
	if n, err := b.d.Release(ctx, held, fair.Suspended, q); err != nil || n != 0 {
		t.Fatalf("Release = %d, %v", n, err)
	}
	// Back in the backlog, and admitted from there at once (asynq's list
	// is empty).
	if st := b.rdb.HGet(ctx, asynqP+"t:"+id, "state").Val(); st != "pending" || !b.rdb.HExists(ctx, fairP+"adm", id).Val() {
		t.Fatalf("after the release the task is %q in asynq; want it admitted again, pending", st)
	}
	if kept, keptT, _, _ := parkedWhere(t, b, held, id); kept || keptT {
		t.Fatalf("released task still kept (kept: %v, keptt %v)", kept, keptT)
	}
	// It runs (the next tenants' tasks need asynq's list).
	if got := dequeue(t, b); got != id {
		t.Fatalf("dequeued %q, want the released %s", got, id)
	}
	if err := b.d.Complete(ctx, q, []fair.Report{{Queue: q, TaskID: id, TenantID: held, Type: "invoice:pdf", Cost: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	done(t, b, id)

	// A retry parked at the running cap (its tenant is not held, so the
	// previous release's heartbeat would release it): the next heartbeat
	// of this release puts it into the backlog.
	const busy = "tn_up_busy"
	p := fair.Policy{Weight: 1, MaxRunning: 1}
	enqueue(t, b, busy, p, 0, 1)
	running := dequeue(t, b)
	if parked, err := b.d.Gate(ctx, q, running, busy, "invoice:pdf"); err != nil || parked {
		t.Fatalf("Gate of the admitted task = %v, %v", parked, err)
	}
	x := task(busy, 100)
	r := x.Message.ID
	b.rdb.HSet(ctx, asynqP+"t:"+r, "msg", x.Message.Encode(), "state", "active")
	b.rdb.LPush(ctx, asynqP+"active", r)
	if parked, err := b.d.Gate(ctx, q, r, busy, "invoice:pdf"); err != nil || !parked {
		t.Fatalf("Gate of a retry at the cap = %v, %v; want parked", parked, err)
	}
	done(t, b, r) // asynq.RevokeTask
	requireKeptOnly(t, b, busy, r)
	oldHeartbeat(t, b)
	requireKeptOnly(t, b, busy, r)
	afterHandBack(b)
	if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := b.d.Waiting(ctx, r, q); err != nil || !ok {
		t.Fatalf("Waiting(%s) after the heartbeat = %v, %v; want the parked retry in the backlog", r, ok, err)
	}
	if kept, keptT, _, _ := parkedWhere(t, b, busy, r); kept || keptT {
		t.Fatalf("released retry still kept (kept: %v, keptt %v)", kept, keptT)
	}

	// Drained: discarded and counted, nothing left of it.
	const drained = "tn_up_drained"
	id = parkHeld(t, b, drained)
	requireKeptOnly(t, b, drained, id)
	n, err := b.d.Drain(ctx, drained, q)
	if err != nil || n.Parked != 1 || n.Total() != 1 {
		t.Fatalf("Drain = %+v, %v; want the kept task discarded and counted", n, err)
	}
	if kept, keptT, _, _ := parkedWhere(t, b, drained, id); kept || keptT {
		t.Fatalf("drained task still kept (kept: %v, keptt %v)", kept, keptT)
	}
	if _, err := b.d.Release(ctx, drained, fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, drained); s.Parked != 0 || s.Waiting != 0 || s.Admitted != 0 {
		t.Fatalf("after the drain and the release: %+v; want nothing left", s)
	}

	// Forgotten: nothing left of it.
	const forgotten = "tn_up_forgotten"
	id = parkHeld(t, b, forgotten)
	requireKeptOnly(t, b, forgotten, id)
	if err := b.d.Forget(ctx, forgotten, q); err != nil {
		t.Fatal(err)
	}
	if kept, keptT, _, _ := parkedWhere(t, b, forgotten, id); kept || keptT {
		t.Fatalf("forgotten tenant's task still kept (kept: %v, keptt %v)", kept, keptT)
	}
	if _, ok, err := b.d.Parked(ctx, forgotten, id, q); err != nil || ok {
		t.Fatalf("Parked after Forget = %v, %v; want nothing", ok, err)
	}
}

// TestOldFormatParkedRecordIsStillReleased: a parked record without a
// message in P..'parked:'..tenant (written by the previous release, or by
// a park when asynq did not hold the task as active), its task in asynq's
// retry set, is released as before: by the heartbeat once its tenant is
// not held, by Release otherwise, back to the front of the backlog with
// its enqueue time and asynq's message, and out of asynq's retry set. A
// task parked that way and parked again with its message moves to kept:
// and is no longer in parked:.
func TestOldFormatParkedRecordIsStillReleased(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	enqueued := b.clock.Now()
	// oldPark leaves task n of tn in asynq's retry set with the previous
	// release's parked record of it.
	oldPark := func(tn string, n int) string {
		x := task(tn, n)
		id := x.Message.ID
		b.rdb.HSet(ctx, asynqP+"t:"+id, "msg", x.Message.Encode(), "state", "retry")
		b.rdb.ZAdd(ctx, asynqP+"retry", redis.Z{Score: float64(b.clock.Now().Add(time.Hour).Unix()), Member: id})
		b.rdb.HSet(ctx, fairP+"parked:"+tn, id, fmt.Sprintf("invoice:pdf\t%d", enqueued.UnixMilli()))
		b.rdb.SAdd(ctx, fairP+"parkedt", tn)
		return id
	}
	b.clock.Advance(10 * time.Second)
	released := func(tn, id string) {
		t.Helper()
		w, ok, err := b.d.Waiting(ctx, id, q)
		if err != nil || !ok {
			t.Fatalf("Waiting(%s) = %v, %v; want the old parked task back in the backlog", id, ok, err)
		}
		if !w.Enqueued.Equal(enqueued) || w.Message.ID != id {
			t.Fatalf("released task %+v; want its enqueue time %v and asynq's message", w, enqueued)
		}
		if n := b.rdb.ZCard(ctx, asynqP+"retry").Val(); n != 0 {
			t.Fatalf("%d tasks left in asynq's retry set", n)
		}
		if _, _, parked, parkedT := parkedWhere(t, b, tn, id); parked || parkedT {
			t.Fatalf("released task still parked (parked: %v, parkedt %v)", parked, parkedT)
		}
	}

	// By the heartbeat: its tenant is not held.
	const free = "tn_old_free"
	enqueue(t, b, free, fair.Policy{Weight: 1}, 1, 1) // the tenant's state; admitted at once
	id := oldPark(free, 0)
	if s := stats(t, b, free); s.Parked != 1 {
		t.Fatalf("stats with the old record: %+v; want 1 parked", s)
	}
	if _, ok, err := b.d.Parked(ctx, free, id, q); err != nil || ok {
		t.Fatalf("Parked(%s) of a task in asynq's retry set = %v, %v; want asynq's to report", id, ok, err)
	}
	if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	released(free, id)

	// By Release: its tenant is held.
	const held = "tn_old_held"
	if _, err := b.d.Hold(ctx, held, fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	id = oldPark(held, 0)
	if err := b.d.Heartbeat(ctx, q, "w1", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, b, held); s.Parked != 1 || s.Waiting != 0 {
		t.Fatalf("a heartbeat released a held tenant's old parked task: %+v", s)
	}
	if _, err := b.d.Release(ctx, held, fair.Paused, q); err != nil {
		t.Fatal(err)
	}
	released(held, id)

	// Parked again with its message (asynq's forwarder made it pending,
	// a worker took it while its tenant was held): only in kept: now.
	const again = "tn_old_again"
	if _, err := b.d.Hold(ctx, again, fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	id = oldPark(again, 0)
	b.rdb.ZRem(ctx, asynqP+"retry", id)
	b.rdb.LPush(ctx, asynqP+"active", id)
	b.rdb.HSet(ctx, asynqP+"t:"+id, "state", "active")
	if ok, err := b.d.Park(ctx, q, id, again, "invoice:pdf"); err != nil || !ok {
		t.Fatalf("Park = %v, %v", ok, err)
	}
	done(t, b, id)
	if s := stats(t, b, again); s.Parked != 1 {
		t.Fatalf("stats of the task parked again: %+v; want 1 parked", s)
	}
	kept, keptT, parked, _ := parkedWhere(t, b, again, id)
	if !kept || !keptT || parked {
		t.Fatalf("parked again with its message: in kept: %v, keptt %v, parked: %v; want only in kept:", kept, keptT, parked)
	}
	afterHandBack(b)
	if _, err := b.d.Release(ctx, again, fair.Suspended, q); err != nil {
		t.Fatal(err)
	}
	if w, ok, err := b.d.Waiting(ctx, id, q); err != nil || !ok || !w.Enqueued.Equal(enqueued) {
		t.Fatalf("Waiting(%s) = %+v, %v, %v; want it back with its first enqueue time", id, w, ok, err)
	}
}
