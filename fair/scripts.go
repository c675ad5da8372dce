package fair

import (
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Every script runs on the keys of one asynq queue. KEYS[1] is the
// dispatcher's key prefix of the queue ("fair:{default}:") and KEYS[2]
// asynq's ("asynq:{default}:"); both carry the queue's hash tag, so on a
// Redis Cluster every key a script derives from them lives in the queue's
// slot, as asynq's own scripts do with the task keys they build from a
// prefix.
//
// Common ARGV (see Dispatcher.common):
//
//	ARGV[1] now, Unix milliseconds; empty: Redis's TIME (Config.Now unset)
//	ARGV[2] now, Unix nanoseconds (asynq's pending_since; a string: it does not fit a Lua number)
//	ARGV[3] minimum pending depth of the asynq queue
//	ARGV[4] least pending tasks per live worker slot
//	ARGV[5] lease of an admitted task, milliseconds
//	ARGV[6] estimated cost of a task type never measured, microseconds
//	ARGV[7] most tasks one call admits
//	ARGV[8] worker time to keep pending per live slot, microseconds
//	ARGV[9] most pending tasks per live slot
//
// Keys under the prefix P:
//
//	P..'ready'       ZSET tenant -> virtual time: tenants that may be admitted now
//	P..'vt'          STRING the queue's virtual time (start tag of the last admission)
//	P..'msg'         HASH task id -> type \t tenant \t enqueued ms \t asynq message (waiting tasks)
//	P..'b:'..tenant  LIST the tenant's waiting task ids, oldest first
//	P..'t:'..tenant  HASH w (weight), mr (max running), mw (max waiting), pv (their Policy.Version),
//	                 vt (virtual time while not ready),
//	                 n:<type> (waiting by type), c:<type> (measured cost EWMA, us)
//	P..'pp:'..tenant HASH w, mr, mw, pv: the policy SetPolicy told for a tenant without state here, for the
//	                 enqueue that creates its state (expires after policyAside; see policyScript)
//	P..'run:'..tenant SET the tenant's admitted, unfinished task ids
//	P..'adm'         HASH admitted task id -> tenant \t type \t estimated cost (us) \t enqueue time (ms) \t weight charged at
//	                 (the estimate was charged over it; absent: the tenant's weight now) \t run token
//	                 (absent: a record of an earlier release, ended by any report of the id)
//	P..'gen'         STRING the last run token handed out (admit() and gateScript take the next ones, takeTokens;
//	                 gone, as after Redis lost its data, it starts again from the clock, not from 0)
//	P..'lr:'..token  STRING task id \t estimate (us) \t weight charged at, of the run the lease check ended
//	                 before its report came (expires after LATE_MS; see reap)
//	P..'cut:'..token STRING set when an attempt of the run was cut off under its handler and charged: should the
//	                 lease check end the run, its estimate is refunded (expires after LATE_MS; see reap)
//	P..'dl'          ZSET admitted task id -> check-again time (ms)
//	P..'hold'        HASH tenant -> hold reasons ('s' suspended, 'p' paused, 'm' moving)
//	P..'holds'       STRING marker written with the holds put back from a durable record (Config.Holds; KEYS[3],
//	                 only then): while it is gone nothing is admitted (holdsLost), until restoreScript writes it
//	P..'unheld'      HASH tenant -> hold reasons released while P..'holds' was gone: restoreScript leaves them out
//	P..'kept:'..tenant HASH task id -> type \t enqueue time (ms) \t asynq message: tasks parked while held or at
//	                 the running cap whose message is kept here (asynq let the task go, or is letting it go)
//	P..'keptt'       SET tenants with records in kept: (the heartbeat releases those no longer held)
//	P..'hb'          ZSET task id parked with its message -> until when (ms) the worker's hand-back of it
//	                 to asynq may still arrive (see HANDBACK); the heartbeat trims what is past
//	P..'parked:'..tenant HASH task id -> type \t enqueue time (ms): tasks parked in asynq's retry set (by the
//	                 previous release, or parked when asynq did not hold them as active); the previous
//	                 release's scripts read only these, and drop a record whose task asynq no longer has,
//	                 so a record with a kept message never goes here
//	P..'parkedt'     SET tenants with records in parked: (the heartbeat releases those no longer held)
//	P..'drained'     ZSET task id -> until when (ms): tasks a drain discarded while their workers were still
//	                 handing them back (asynq held them as active); should asynq bring one back to a
//	                 worker (the hand-back lost its lease, or a shutdown put it back to pending), the
//	                 gate and the park script hand it back again instead of running it (see drainScript)
//	P..'draining'    SET tenants a stepwise Drain is working through (their t: hash's 'drain': until when, ms), or
//	                 whose drains go through asynq's sets and pending list (their t: hash's 'scan')
//	P..'dr:'..tenant ZSET token -> sequence number (P..'drseq') of the tenant's drains under way;
//	                 P..'dr:'..tenant..':'..token LIST the task ids that waited in its backlog when that drain
//	                 began, not discarded yet (see drainPrelude)
//	P..'drr:'..tenant..':'..token SET the tenant's task ids asynq held as active when that drain began, and those
//	                 admitted while it goes through asynq's sets and pending list (scanning): their retries stay
//	                 (see drainScript; expires after an hour, Dispatcher.Drain deletes it)
//	P..'drs:'..tenant SET the tokens of the tenant's drains going through asynq's sets and pending list (with
//	                 the t: hash's 'scan': until when, ms, drainScanFor after the last call of one of them;
//	                 Dispatcher.Drain removes its own, a heartbeat both once the mark lapsed; expires after an hour)
//	P..'drf:'..tenant..':'..token STRING waiting \t admitted \t parked: what that drain's first call discarded, so
//	                 that the call sent again (go-redis, after a read timeout) does not begin anew (expires after an hour)
//	P..'cost'        HASH type -> measured cost EWMA over all tenants (us); '*' -> over the queue
//	P..'depth'       ZSET tenant -> waiting tasks (top-K metrics)
//	P..'workers'     ZSET worker id -> heartbeat expiry (ms); P..'conc' HASH worker id -> concurrency; P..'cap' STRING their sum
//	P..'heal'        HASH where the heartbeat's repair after a partial loss of Redis's data is (healPrelude): depth
//	                 (rank in P..'depth'), msg and adm (HSCAN cursors), cycle (sweeps of P..'msg' done)
//	P..'healed'      STRING set by the beat that repaired, for Config.HealEvery: the other beats until it expires do not
//	P..'lost'        ZSET tenant -> the sweep of P..'msg' in which its backlog list was found gone or short (or too
//	                 long to look through): its waiting tasks missing from the list go back into it (healPrelude)
//	P..'rep:'..reporter STRING the highest batch sequence number of a Reporter applied (expires; see completeScript)
//	P..'wake'        Pub/Sub channel (not a key): admit() publishes when it fills asynq's empty pending list
//	                 (WakeChannel; idle workers wait for it, IdleWaiter)
const prelude = `
local P, A = KEYS[1], KEYS[2]
-- M is the marker of the queue's holds (P..'holds') when the dispatcher
-- puts back holds Redis lost (Config.Holds), else nil.
local M = KEYS[3]
local NOW, NOW_NS = tonumber(ARGV[1]), ARGV[2]
if ARGV[1] == '' then
  -- Redis's clock: processes whose clocks disagree agree on it, so a time
  -- one writes (a lease, a heartbeat's expiry, a drain's mark) means the
  -- same to every other (Config.Now).
  local tm = redis.call('TIME')
  NOW = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
  NOW_NS = tm[1] .. string.format('%06d', tonumber(tm[2])) .. '000'
end
local MIN_PENDING = tonumber(ARGV[3])
local PER_SLOT = tonumber(ARGV[4])
local LEASE = tonumber(ARGV[5])
local DEFAULT_COST = tonumber(ARGV[6])
local MAX_ADMIT = tonumber(ARGV[7])
local PENDING_US = tonumber(ARGV[8])
local MAX_PER_SLOT = tonumber(ARGV[9])
local SEP = '\t'
-- HANDBACK is how long after a worker parked a task with its message
-- (park) asynq may still send the worker's hand-back of it: asynq retries
-- a hand-back whose Redis call failed (go-redis sends a timed-out script
-- again) until the attempt's lease runs out, and the lease (asynq's 30 s,
-- LEASE) may have been extended just before the hand-back began. Half as
-- much again covers the park call's own latency and the clocks of the
-- processes that park and release. Applied after the task was released,
-- admitted and taken by a worker again, that hand-back would delete the
-- new run from asynq's lists: releaseParked waits it out.
local HANDBACK = LEASE + math.floor(LEASE / 2)
-- LATE_MS is how long the estimate of a run the lease check ended is kept
-- for its late report (reporterTTL in dispatcher.go: a Reporter gives up
-- on a batch well before).
local LATE_MS = 3600000
-- RUN_ENTRY starts the map entry {1: 'fair-run', 2: token} of asynq's
-- message headers (field 15) that names the run an admission starts
-- (RunHeader in dispatcher.go).
local RUN_ENTRY = '\10\8fair-run\18'

-- fmt writes a number so that tonumber reads it back exactly. Integers,
-- most numbers here (times, tokens, weights, counts), take '%d', which is
-- about three times cheaper than '%.17g' and writes the same digits.
local sformat, floor = string.format, math.floor
local function fmt(x)
  if x == floor(x) and x > -1e15 and x < 1e15 then return sformat('%d', x) end
  return sformat('%.17g', x)
end
local function num(v, def)
  local n = tonumber(v or '')
  if n == nil then return def end
  return n
end
local function tkey(t) return P .. 't:' .. t end

-- scanning notes task ids of t, admitted (or let run by the gate) now,
-- in the set of the tasks each drain of t going through asynq's sets and
-- pending list leaves (P..'drs:'..t, see drainScript): they did not wait
-- when it began, and should one fail while the drain scans, its retry
-- stays, as that of a task running when it began does. s is the t: hash's
-- 'scan' (nil: read it).
local function scanning(t, ids, s)
  if num(s or redis.call('HGET', tkey(t), 'scan'), 0) <= NOW then return end
  for _, tok in ipairs(redis.call('SMEMBERS', P .. 'drs:' .. t)) do
    local k = P .. 'drr:' .. t .. ':' .. tok
    for i = 1, #ids, 1000 do
      redis.call('SADD', k, unpack(ids, i, math.min(i + 999, #ids)))
    end
    redis.call('PEXPIRE', k, 3600000)
  end
end

-- withRun appends the header naming run tok to an asynq message. Protobuf
-- merges an appended field into the message, and a map entry appended
-- replaces one of the same key: the last one wins.
local function withRun(msg, tok)
  return msg .. 'z' .. string.char(#RUN_ENTRY + 1 + #tok) .. RUN_ENTRY .. string.char(#tok) .. tok
end

-- withoutRun drops the run header withRun appended last, so that a message
-- admitted again (held back to its backlog) does not grow by one header
-- each time (asynq drops the spare ones when it rewrites a message, as it
-- does for a retry).
local function withoutRun(msg)
  local from = #msg - #RUN_ENTRY - 40
  if from < 3 then from = 3 end
  local p = string.find(msg, RUN_ENTRY, from, true)
  while p do
    local vl = string.byte(msg, p + #RUN_ENTRY)
    if vl and p + #RUN_ENTRY + vl == #msg and string.byte(msg, p - 1) == #RUN_ENTRY + 1 + vl and string.byte(msg, p - 2) == 122 then
      return string.sub(msg, 1, p - 3)
    end
    p = string.find(msg, RUN_ENTRY, p + 1, true)
  end
  return msg
end

-- many runs cmd on key with the arguments in list, 1,000 at a time (Lua
-- unpacks a bounded number of values; 1,000 keeps field-value pairs whole).
local function many(cmd, key, list)
  for i = 1, #list, 1000 do
    redis.call(cmd, key, unpack(list, i, math.min(i + 999, #list)))
  end
end

-- hashFields reads the fields ids of hash key, 1,000 at a time, and
-- returns field -> value (false for a missing field).
local function hashFields(key, ids)
  local out = {}
  for i = 1, #ids, 1000 do
    local vs = redis.call('HMGET', key, unpack(ids, i, math.min(i + 999, #ids)))
    for j = 1, #vs do out[ids[i + j - 1]] = vs[j] end
  end
  return out
end

-- fields splits s at the first k separators: k fields and the rest.
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

local function weight(t)
  local w = num(redis.call('HGET', tkey(t), 'w'), 1)
  if w < 1 then w = 1 end
  return w
end

local function vnow() return num(redis.call('GET', P .. 'vt'), 0) end

-- takeTokens takes n run tokens from P..'gen' and returns the last token
-- handed out before them (the first taken is one more). A P..'gen' that
-- is gone (Redis restarted empty, was flushed) starts again from the
-- clock in microseconds, not from 0: attempts admitted before the loss may
-- still be running, and a token handed out again to a new run of the same
-- task id would let the late report or park of such an attempt end that
-- run (its slot freed while it runs, or the running task parked and run
-- again once released).
local function takeTokens(n)
  if redis.call('EXISTS', P .. 'gen') == 0 then redis.call('SET', P .. 'gen', fmt(NOW * 1000)) end
  return redis.call('INCRBY', P .. 'gen', n) - n
end

local function held(t)
  local h = redis.call('HGET', P .. 'hold', t)
  return h and h ~= ''
end

-- draining reports whether a Drain of t is under way (Dispatcher.Drain
-- works in steps; between them t's backlog must not be admitted). The
-- mark expires a minute after the last step, should its caller be gone.
local function draining(t)
  return num(redis.call('HGET', tkey(t), 'drain'), 0) > NOW
end

-- setAside is how many of t's tasks drains set aside and have not
-- discarded yet (P..'dr:'..t lists): they wait until then, and a drain cut
-- off between its steps puts the rest back into the backlog (undrain).
local function setAside(t)
  local n = 0
  for _, tok in ipairs(redis.call('ZRANGE', P .. 'dr:' .. t, 0, -1)) do
    n = n + redis.call('LLEN', P .. 'dr:' .. t .. ':' .. tok)
  end
  return n
end

local function eligible(t)
  if redis.call('LLEN', P .. 'b:' .. t) == 0 then return false end
  if held(t) or draining(t) then return false end
  local mr = num(redis.call('HGET', tkey(t), 'mr'), 0)
  if mr > 0 and redis.call('SCARD', P .. 'run:' .. t) >= mr then return false end
  return true
end

-- reconsider puts t into the ready set when it may be admitted and is not
-- there (at the queue's virtual time if it fell behind: idle time earns no
-- credit), and takes it out when it may not.
local function reconsider(t)
  local s = redis.call('ZSCORE', P .. 'ready', t)
  if eligible(t) then
    if not s then
      local vt = num(redis.call('HGET', tkey(t), 'vt'), 0)
      local v = vnow()
      if vt < v then vt = v end
      redis.call('ZADD', P .. 'ready', fmt(vt), t)
    end
  elseif s then
    redis.call('HSET', tkey(t), 'vt', s)
    redis.call('ZREM', P .. 'ready', t)
  end
end

-- charge moves t's virtual time by delta (cost / weight).
local function charge(t, delta)
  if delta == 0 then return end
  local s = redis.call('ZSCORE', P .. 'ready', t)
  if s then
    redis.call('ZADD', P .. 'ready', fmt(tonumber(s) + delta), t)
  else
    redis.call('HSET', tkey(t), 'vt', fmt(num(redis.call('HGET', tkey(t), 'vt'), 0) + delta))
  end
end

local function estimate(t, typ)
  local c = redis.call('HGET', tkey(t), 'c:' .. typ)
  if not c then c = redis.call('HGET', P .. 'cost', typ) end
  local e = num(c, DEFAULT_COST)
  if e < 1 then e = 1 end
  return e
end

-- ewmaAll folds costs into the moving average at key's field in order,
-- with one read and one write.
local function ewmaAll(key, field, costs)
  local v = tonumber(redis.call('HGET', key, field) or '')
  for _, c in ipairs(costs) do
    if v then v = v * 0.8 + c * 0.2 else v = c end
  end
  redis.call('HSET', key, field, fmt(v))
end
local function countWaiting(t, typ, d)
  redis.call('HINCRBY', tkey(t), 'n:' .. typ, d)
  if tonumber(redis.call('ZINCRBY', P .. 'depth', d, t)) <= 0 then
    redis.call('ZREM', P .. 'depth', t)
  end
end

-- chargedWeight is the weight an admission record's estimate was charged
-- over (field 5), or the tenant's weight now for a record without it.
local function chargedWeight(f, t)
  local w = num(f[5], nil)
  if w == nil then return weight(t) end
  if w < 1 then w = 1 end
  return w
end

-- finish drops an admitted task's accounting; it returns its tenant, type,
-- estimated cost, enqueue time (ms; nil when not known), the weight the
-- estimate was charged over and its run token (nil when not recorded), or
-- nil when the task was not admitted (any more). A record without an
-- estimate (a retry the gate let run, one the repair made) holds when it
-- was made, not when its task was enqueued (asynq keeps no enqueue time
-- of a retry): its enqueue time is not known.
local function finish(id)
  local meta = redis.call('HGET', P .. 'adm', id)
  if not meta then return nil end
  redis.call('HDEL', P .. 'adm', id)
  redis.call('ZREM', P .. 'dl', id)
  local f = fields(meta, 5)
  redis.call('SREM', P .. 'run:' .. f[1], id)
  local est, enq = num(f[3], 0), nil
  if est > 0 then enq = num(f[4], nil) end
  return f[1], f[2], est, enq, chargedWeight(f, f[1]), f[6]
end

-- enqAt is the enqueue time (ms) of the task at index i of list l (a
-- backlog, or a list a drain set aside), or 0 when there is none.
local function enqAt(l, i)
  local id = redis.call('LINDEX', l, i)
  local w = id and redis.call('HGET', P .. 'msg', id)
  if not w then return 0 end
  return num(fields(w, 3)[3], 0)
end

-- olderIn counts the tasks at the front of list l (n long) enqueued
-- before enq, by binary search: a backlog is in enqueue order (tasks join
-- it at the back as they are enqueued, and go back into it at their place,
-- restore).
local function olderIn(l, n, enq)
  local lo, hi = 0, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if enqAt(l, mid) < enq then lo = mid + 1 else hi = mid end
  end
  return lo
end

-- restore puts tasks of t back into its backlog (their P..'msg' records
-- written), each before the first task enqueued after it: a task a hold
-- moved back, a parked one released, what an interrupted drain set aside,
-- whichever comes back first, all go back in enqueue-time order. ids are
-- in enqueue order; enqs are their enqueue times (nil: read from their
-- records). Almost always they are older than every task of the backlog
-- (a tenant's tasks leave it in order), and go to its front in one push;
-- otherwise one goes in by LINSERT, several are merged with the older
-- tasks at the front.
local function restore(t, ids, enqs)
  local k = #ids
  if k == 0 then return end
  local l = P .. 'b:' .. t
  local n = redis.call('LLEN', l)
  if n > 0 and not enqs then
    enqs = {}
    for i = 1, k, 1000 do
      local ws = redis.call('HMGET', P .. 'msg', unpack(ids, i, math.min(i + 999, k)))
      for j = 1, #ws do enqs[#enqs + 1] = ws[j] and num(fields(ws[j], 3)[3], 0) or 0 end
    end
  end
  local lo = 0
  if n > 0 then lo = olderIn(l, n, enqs[k]) end
  if lo == 0 then
    local rev = {}
    for i = k, 1, -1 do rev[#rev + 1] = ids[i] end
    many('LPUSH', l, rev)
  elseif k == 1 then
    if lo == n then
      redis.call('RPUSH', l, ids[1])
    else
      redis.call('LINSERT', l, 'BEFORE', redis.call('LINDEX', l, lo), ids[1])
    end
  else
    local front = redis.call('LRANGE', l, 0, lo - 1)
    local fenq = {}
    for i = 1, #front, 1000 do
      local ws = redis.call('HMGET', P .. 'msg', unpack(front, i, math.min(i + 999, #front)))
      for j = 1, #ws do fenq[#fenq + 1] = ws[j] and num(fields(ws[j], 3)[3], 0) or 0 end
    end
    local merged, a, b = {}, 1, 1
    while a <= k or b <= #front do
      if b > #front or (a <= k and enqs[a] <= fenq[b]) then
        merged[#merged + 1] = ids[a]
        a = a + 1
      else
        merged[#merged + 1] = front[b]
        b = b + 1
      end
    end
    redis.call('LTRIM', l, lo, -1)
    local rev = {}
    for i = #merged, 1, -1 do rev[#rev + 1] = merged[i] end
    many('LPUSH', l, rev)
  end
end

-- unknownEnq is the enqueue time recorded for a task parked without one
-- (a retry asynq brought back, a task enqueued past the dispatcher): the
-- oldest of t's waiting tasks' (its backlog's, and what drains set aside),
-- or NOW when none waits. A retry's task was admitted before every task
-- of t still waiting (a tenant's tasks leave its backlog in order), so it
-- is no later than theirs; recorded so, it goes back in front of them
-- (at NOW it would go behind them).
local function unknownEnq(t)
  local e = NOW
  local lists = { P .. 'b:' .. t }
  for _, tok in ipairs(redis.call('ZRANGE', P .. 'dr:' .. t, 0, -1)) do
    lists[#lists + 1] = P .. 'dr:' .. t .. ':' .. tok
  end
  for _, l in ipairs(lists) do
    local at = enqAt(l, 0)
    if at > 0 and at < e then e = at end
  end
  return e
end

-- wait puts a task back into its tenant's backlog, at its place by
-- enqueue time (restore).
local function wait(t, id, typ, msg, enq)
  redis.call('HSET', P .. 'msg', id, typ .. SEP .. t .. SEP .. enq .. SEP .. withoutRun(msg))
  restore(t, { id }, { num(enq, 0) })
  countWaiting(t, typ, 1)
end

-- holdsLost reports whether the queue's holds may be lost: they are put
-- back from a durable record (M, Config.Holds) and their marker, written
-- with them, is gone (Redis restarted empty, was flushed, or lost the
-- key). Nothing is admitted then until a worker's heartbeat has put them
-- back (restoreScript): a held tenant's task admitted meanwhile would run.
local function holdsLost()
  return M ~= nil and redis.call('EXISTS', M) == 0
end

-- holdBack moves t's admitted task id, pending in asynq (key: its task
-- hash), back into t's backlog at its place by enqueue time, its estimate
-- refunded; a task whose enqueue time is not known (a retry the gate let
-- run, which a shutdown put back) goes in front, where it was taken from
-- (unknownEnq).
local function holdBack(t, id, key)
  local msg = redis.call('HGET', key, 'msg')
  local _, typ, est, enq, w = finish(id)
  redis.call('LREM', A .. 'pending', 1, id)
  redis.call('DEL', key)
  charge(t, -est / w)
  wait(t, id, typ, msg, enq or unknownEnq(t))
end

-- unrun makes t's admitted tasks that asynq holds but not as pending
-- name their run in asynq's copy of their message no more: should a
-- shutdown put a running one back into asynq's pending list, or an
-- operator run one archived (or retrying, or scheduled) from the
-- dashboard before the lease check met it (reap blanks the run of those
-- too, but only once their lease ran out), the worker that takes it asks
-- the gate (which parks it while the tenant is held) instead of running
-- it as an admitted first attempt. Pending ones go back into the backlog
-- (holdBack).
local function unrun(t)
  for _, id in ipairs(redis.call('SMEMBERS', P .. 'run:' .. t)) do
    local key = A .. 't:' .. id
    local st = redis.call('HGET', key, 'state')
    if st == 'active' or st == 'archived' or st == 'retry' or st == 'scheduled' then
      local msg = redis.call('HGET', key, 'msg')
      if msg then redis.call('HSET', key, 'msg', withRun(withoutRun(msg), '')) end
    end
  end
end

-- A parked task's record is in one of two hashes of its tenant: kept:
-- when it holds the task's message (asynq let the task go), parked: when
-- it does not (the task is in asynq's retry set). The previous release's
-- scripts read parked: only, and drop a record whose task asynq does not
-- have: a record with its message must not be where they look.
local function keptKey(t) return P .. 'kept:' .. t end
local function parkedKey(t) return P .. 'parked:' .. t end

-- parkedRecord is the record of task id parked for t, from either hash,
-- or nil.
local function parkedRecord(t, id)
  return redis.call('HGET', keptKey(t), id) or redis.call('HGET', parkedKey(t), id)
end

-- discarded reports whether a drain discarded task id while its worker
-- was still handing it back (P..'drained', see drainScript): asynq may
-- bring that attempt back to a worker, which must not run it.
local function discarded(id)
  local s = redis.call('ZSCORE', P .. 'drained', id)
  return s and tonumber(s) > NOW
end

-- scanningDrains returns the tokens of t's drains going through asynq's
-- sets and pending list (P..'drs:'..t) while their mark (the t: hash's
-- 'scan', which each of their calls moves on) is live, else nil.
local function scanningDrains(t)
  if num(redis.call('HGET', tkey(t), 'scan'), 0) <= NOW then return nil end
  return redis.call('SMEMBERS', P .. 'drs:' .. t)
end

-- scansDiscard reports whether one of the drains toks of t would discard
-- parked task id at the end of its scans (drainScansEndScript): id is not
-- one of the tasks that drain leaves (P..'drr:'..t..':'..tok).
local function scansDiscard(t, toks, id)
  for _, tok in ipairs(toks) do
    if redis.call('SISMEMBER', P .. 'drr:' .. t .. ':' .. tok, id) == 0 then return true end
  end
  return false
end

-- parkedSince is the enqueue time recorded when task id of t was parked
-- before (a task parked again keeps it), or nil.
local function parkedSince(t, id)
  local old = parkedRecord(t, id)
  if not old then return nil end
  return num(fields(old, 2)[2], nil)
end

-- parkRecord is the parked record of task id: its type, its enqueue time
-- and, when asynq holds it as active (a worker is about to hand it back),
-- its message as asynq has it, retry count included. The worker hands such
-- a task back with asynq.RevokeTask: asynq deletes its own record of it
-- without archiving it or counting a retry, and the release takes the
-- message from here (releaseParked).
--
-- asynq's own copy of the message then names no run (an empty run
-- header): the attempt's admission is over. Should asynq put this attempt
-- back into its pending list instead of letting it go (a shutdown that
-- stops waiting for the handler requeues it, whatever the handler
-- returns later), the worker that takes it finds no run named and asks
-- the gate, which parks it again or lets it run once and drops this
-- record; without that it would run as a first attempt past the gate
-- (held or not), and run again once released from this record.
local function parkRecord(id, typ, enq)
  local rec = typ .. SEP .. fmt(enq)
  local key = A .. 't:' .. id
  if redis.call('HGET', key, 'state') == 'active' then
    local msg = redis.call('HGET', key, 'msg')
    if msg then
      redis.call('HSET', key, 'msg', withRun(withoutRun(msg), ''))
      return rec .. SEP .. msg, true
    end
  end
  return rec, false
end

-- park records task id of t as parked (parkRecord): with its message in
-- kept: (listed in keptt), without it in parked: (listed in parkedt). A
-- task parked again is taken out of the other hash, so that it is never
-- in both.
local function park(t, id, typ, enq)
  local rec, kept = parkRecord(id, typ, enq)
  if kept then
    redis.call('HDEL', parkedKey(t), id)
    redis.call('HSET', keptKey(t), id, rec)
    redis.call('SADD', P .. 'keptt', t)
    redis.call('ZADD', P .. 'hb', NOW + HANDBACK, id)
  else
    redis.call('HDEL', keptKey(t), id)
    redis.call('HSET', parkedKey(t), id, rec)
    redis.call('SADD', P .. 'parkedt', t)
  end
end

-- unqueue takes task id, which asynq holds in state st ('retry' or
-- 'pending': not started), out of asynq: out of its retry set or pending
-- list, and its record deleted.
local function unqueue(id, st)
  if st == 'retry' then
    redis.call('ZREM', A .. 'retry', id)
  else
    redis.call('LREM', A .. 'pending', 1, id)
  end
  redis.call('DEL', A .. 't:' .. id)
end

-- releaseParked puts t's parked tasks that asynq holds for their retry
-- back into its backlog (wait: at their place by enqueue time), also one
-- asynq's forwarder has made pending again (its hour in the retry set ran
-- out during the hold): left in asynq's list it would run unadmitted,
-- past the tenant's running cap (its retry count of 0 takes it past the
-- worker's gate). A parked task still running (its worker has not handed
-- it back yet) stays parked. It returns how many went back and how many
-- are still running. A task
-- parked with its message (parkRecord) goes back with that message once
-- asynq has let it go (its record deleted by the worker's hand-back), or
-- once asynq archived it (its worker was killed after parking it, and
-- asynq's recoverer archived its last attempt): never while asynq still
-- holds it as active, so asynq's own script that ends the attempt cannot
-- delete a run of the id admitted meanwhile. One whose id lives again in
-- the dispatcher (enqueued anew while parked) is dropped: that task
-- stands for it. A task asynq let go within HANDBACK of its park stays
-- parked until then (not counted as still running): the worker's
-- hand-back, applied already, may still come again and would delete a
-- run of the id admitted meanwhile; the heartbeat releases it after. Both
-- hashes of parked records are worked through (kept: and parked:, see
-- park); a tenant with nothing left in one leaves its set of tenants
-- (keptt, parkedt). While drains of t go through asynq's sets and pending
-- list, a parked task one of them would discard at the end of its scans
-- (parked meanwhile: a retry that waited in asynq when it began, which the
-- gate parked) stays parked until then (not counted as still running):
-- released, it would go back into the backlog, where that end does not
-- look, and run after the drain said it discarded what waited.
local function releaseParked(t)
  local released, active = 0, 0
  local toks = scanningDrains(t)
  for _, h in ipairs({ { keptKey(t), P .. 'keptt' }, { parkedKey(t), P .. 'parkedt' } }) do
    local hk, set, stuck, later = h[1], h[2], 0, 0
    local parked = redis.call('HGETALL', hk)
    for i = #parked - 1, 1, -2 do
      local id, pf = parked[i], fields(parked[i + 1], 2)
      local typ, enq, kept = pf[1], num(pf[2], NOW), pf[3]
      local key = A .. 't:' .. id
      local st = redis.call('HGET', key, 'state')
      if toks and scansDiscard(t, toks, id) then
        later = later + 1
      elseif st == 'retry' or st == 'pending' then
        local msg = redis.call('HGET', key, 'msg')
        unqueue(id, st)
        redis.call('HDEL', hk, id)
        wait(t, id, typ, msg, enq)
        released = released + 1
      elseif st == 'active' then
        stuck = stuck + 1
      elseif kept and not st and num(redis.call('ZSCORE', P .. 'hb', id), 0) > NOW then
        later = later + 1
      elseif kept and (not st or st == 'archived') and redis.call('HEXISTS', P .. 'msg', id) == 0
          and redis.call('HEXISTS', P .. 'adm', id) == 0 then
        if st then
          redis.call('ZREM', A .. 'archived', id)
          redis.call('DEL', key)
        end
        redis.call('HDEL', hk, id)
        redis.call('ZREM', P .. 'hb', id)
        wait(t, id, typ, kept, enq)
        released = released + 1
      else
        redis.call('HDEL', hk, id)
      end
    end
    if stuck + later == 0 then redis.call('SREM', set, t) end
    active = active + stuck
  end
  return released, active
end

-- endRun ends the admission of task id before its worker's report came
-- (reap; an enqueue replacing the finished task, enqueueScript) and
-- returns its tenant, or nil when id was not admitted. The slot is freed.
-- The estimate charged at admission stays charged: the run's cost is not
-- known. Its report may still come (late: sent again after a Redis error,
-- the attempt ended just before the lease ran out, or a report in flight
-- when the task was replaced); P..'lr:' keeps the estimate under the
-- run's token for it, so that the report charges the difference to its
-- measured cost (completeScript), not the whole cost on top.
local function endRun(id)
  local t, _, est, _, w, tok = finish(id)
  if t and tok and tok ~= '' and est > 0 then
    if redis.call('DEL', P .. 'cut:' .. tok) == 1 then
      -- An attempt of the run was cut off and charged its measured
      -- cost (completeScript), and the run ends without a report
      -- (asynq retries the task under a run of its own): that was
      -- its report, and the estimate goes.
      charge(t, -est / w)
    else
      redis.call('SET', P .. 'lr:' .. tok, id .. SEP .. fmt(est) .. SEP .. fmt(w), 'PX', LATE_MS)
    end
  end
  return t
end

-- reap checks admitted tasks whose lease ran out: still pending or active
-- in asynq, they get another lease; otherwise (finished, retrying, deleted
-- without a report from a worker, e.g. after kill -9, or deleted or
-- archived from the dashboard) their slot is freed. A task asynq still
-- keeps unfinished (archived, retrying, scheduled) gets its run header
-- blanked in asynq's copy of its message: the run it names is over, so
-- should it run again (the dashboard's "run now" of a pending task an
-- operator archived), its worker asks the gate, which holds it while its
-- tenant is held and at its running cap, instead of running it as an
-- admitted first attempt past both. The run ends as endRun says.
local function reap(max)
  local ids = redis.call('ZRANGEBYSCORE', P .. 'dl', '-inf', NOW, 'LIMIT', 0, max)
  for _, id in ipairs(ids) do
    local st = redis.call('HGET', A .. 't:' .. id, 'state')
    if st == 'pending' or st == 'active' then
      redis.call('ZADD', P .. 'dl', NOW + LEASE, id)
    else
      if st == 'archived' or st == 'retry' or st == 'scheduled' then
        local key = A .. 't:' .. id
        local msg = redis.call('HGET', key, 'msg')
        if msg then redis.call('HSET', key, 'msg', withRun(withoutRun(msg), '')) end
      end
      local t = endRun(id)
      if t then reconsider(t) end
    end
  end
end

-- target is how many tasks asynq's pending list should hold: PENDING_US
-- of work per live worker slot at the queue's measured cost per task, at
-- least PER_SLOT and at most MAX_PER_SLOT tasks per slot, at least
-- MIN_PENDING. Cheap tasks get a deeper list (the refill after a completion
-- must arrive before the list runs dry, or asynq's workers sleep a poll
-- interval), expensive ones a shallower one (what is pending is what a
-- task of a tenant with work in flight waits behind).
local function target()
  local cap = num(redis.call('GET', P .. 'cap'), 0)
  local cost = num(redis.call('HGET', P .. 'cost', '*'), DEFAULT_COST)
  if cost < 1 then cost = 1 end
  local n = math.ceil(cap * PENDING_US / cost)
  local lo, hi = math.ceil(cap * PER_SLOT), math.ceil(cap * MAX_PER_SLOT)
  if n < lo then n = lo end
  if n > hi then n = hi end
  if n < MIN_PENDING then n = MIN_PENDING end
  return n
end

-- admit moves tasks from the backlogs into asynq's pending list until the
-- list holds target() tasks, taking each from the ready tenant with the
-- lowest virtual time and advancing that tenant by the task's estimated
-- cost over its weight. It returns {id, waited ms, ...} of what it
-- admitted. A tenant with nothing admitted or running gets its first task
-- to the head of asynq's pending list (the end asynq takes from), the rest
-- go to the tail: what asynq already holds is other tenants' work, and a
-- quiet tenant's task would otherwise wait behind all of it.
--
-- The choice runs over a window of the ready set held in Lua: the room+1
-- lowest tenants are read once, each admission moves its tenant's virtual
-- time in the window, and the window is written back (and read again)
-- only when its lowest tenant is no longer below the first tenant outside
-- it. A tenant's weight, cap, backlog length and admitted count are read
-- once per call, and the writes that do not depend on order (the task ids
-- in the dispatcher's hashes and sets, the waiting counters) are made once
-- per call. A tenant's backlog is read ahead a chunk of ids and their
-- messages at a time (take) and trimmed once. So an admission costs two
-- Redis calls of its own (check and write asynq's task hash), a share of
-- its tenant's chunk reads and of the pushes at the end, whatever the
-- number of tenants.
--
-- Each admission starts a run of its task id, named by a run token: the
-- admission record keeps it, and asynq's message carries it in its
-- headers (withRun), so the worker that runs the task reports it and
-- completeScript ends this run only, not a later one of the same id. The
-- call takes the tokens it may need from P..'gen' at its first
-- admission, in one call.
local function admit()
  reap(16)
  if holdsLost() then return {} end
  local queued = redis.call('LLEN', A .. 'pending')
  local room = target() - queued
  if room > MAX_ADMIT then room = MAX_ADMIT end
  local out = {}
  if room <= 0 then return out end

  local info = {}   -- tenant -> {w, mr, run, left, held, ...} (about)
  local anyHeld = redis.call('HLEN', P .. 'hold') > 0
  local function about(t)
    local i = info[t]
    if i then return i end
    local h = redis.call('HMGET', tkey(t), 'w', 'mr', 'drain', 'scan')
    local w = num(h[1], 1)
    if w < 1 then w = 1 end
    i = { w = w, wf = fmt(w), mr = num(h[2], 0), run = redis.call('SCARD', P .. 'run:' .. t), left = redis.call('LLEN', P .. 'b:' .. t),
      held = (anyHeld and held(t)) or num(h[3], 0) > NOW, scan = h[4] or '', est = {}, rec = {}, taken = {}, buf = {}, ws = {}, pos = 0, off = 0, chunk = 0 }
    info[t] = i
    return i
  end
  local function ok(i) return i.left > 0 and not i.held and (i.mr == 0 or i.run < i.mr) end

  local win, edge = {}, nil  -- window {t, vt, out}; edge: score of the first tenant outside it
  local function load()
    win, edge = {}, nil
    local r = redis.call('ZRANGE', P .. 'ready', 0, room, 'WITHSCORES')
    local n = #r / 2
    if n > room then edge = tonumber(r[2 * n]); n = room end
    for k = 1, n do win[k] = { t = r[2 * k - 1], vt = tonumber(r[2 * k]) } end
  end
  local function store()
    local moved = {}
    for _, e in ipairs(win) do
      if e.out then
        redis.call('ZREM', P .. 'ready', e.t)
        redis.call('HSET', tkey(e.t), 'vt', fmt(e.vt))
      elseif e.moved then
        moved[#moved + 1] = fmt(e.vt)
        moved[#moved + 1] = e.t
        e.moved = false
      end
    end
    if #moved > 0 then many('ZADD', P .. 'ready', moved) end
  end

  -- take returns the next task id of t's backlog and its P..'msg' record
  -- (false when it has none). The ids are read ahead from the front of the
  -- backlog with their records, a chunk at a time (a fair part of the room
  -- first, twice as many each time after), and the backlog is trimmed by
  -- what was taken once, at the end: two calls per chunk instead of two
  -- per task.
  local function take(t, i)
    if i.pos == #i.buf then
      local k = i.chunk * 2
      if k == 0 then k = math.ceil(room / math.max(#win, 1)) end
      if i.mr > 0 and k > i.mr - i.run then k = i.mr - i.run end
      if k > room then k = room end
      if k > i.left then k = i.left end
      if k > 1000 then k = 1000 end
      if k < 1 then k = 1 end
      i.chunk = k
      local ids = redis.call('LRANGE', P .. 'b:' .. t, i.off, i.off + k - 1)
      if #ids == 0 then return nil end
      i.buf, i.ws, i.pos, i.off = ids, redis.call('HMGET', P .. 'msg', unpack(ids)), 0, i.off + #ids
    end
    i.pos = i.pos + 1
    return i.buf[i.pos], i.ws[i.pos]
  end

  local pushed, head, adm, dl, waited = {}, {}, {}, {}, {}
  local leaseEnd = fmt(NOW + LEASE) -- every admission's lease deadline, written once
  local last = nil
  local gen = nil -- the last token taken, once tokens were taken
  load()
  while room > 0 do
    local best = nil
    for _, e in ipairs(win) do
      if not e.out and (best == nil or e.vt < best.vt) then best = e end
    end
    if best == nil and edge == nil then break end
    if best == nil or (edge ~= nil and best.vt > edge) then
      -- Tenants outside the window may come first now: start over from Redis.
      store()
      load()
      best = win[1]
      if best == nil then break end
    end
    local t = best.t
    local i = about(t)
    local id, w = nil, nil
    if ok(i) then id, w = take(t, i) end
    if id then
      i.left = i.left - 1
      waited[#waited + 1] = id
      if w then
        local f = fields(w, 3)
        local typ, enq, msg = f[1], num(f[3], nil), f[4]
        local enqs = f[3]
        if not enq then enq, enqs = NOW, fmt(NOW) end
        i.taken[typ] = (i.taken[typ] or 0) - 1
        local key = A .. 't:' .. id
        local st = redis.call('HGET', key, 'state')
        if st == 'completed' or st == 'archived' then
          -- A finished run of the id (enqueued past the dispatcher): the
          -- new task starts a fresh record, without its result or times.
          redis.call('ZREM', A .. st, id)
          redis.call('DEL', key)
        end
        if st and st ~= 'completed' and st ~= 'archived' then
          -- The id is live in asynq already (enqueued past the dispatcher):
          -- running it twice is worse than dropping the copy.
          out[#out + 1] = id
          out[#out + 1] = -1
        else
          if not gen then gen = takeTokens(room) end
          gen = gen + 1
          local tok = fmt(gen)
          redis.call('HSET', key, 'msg', withRun(msg, tok), 'state', 'pending', 'pending_since', NOW_NS)
          if i.run == 0 and i.left == 0 then
            -- A tenant with nothing else admitted, running or waiting (a
            -- quiet one) gets its task to the head of asynq's list, ahead
            -- of the tasks other tenants were admitted earlier. A tenant
            -- with a backlog does not, even when its running cap lets it
            -- have nothing in flight at the moment.
            head[#head + 1] = id
          else
            pushed[#pushed + 1] = id
          end
          local est = i.est[typ]
          if not est then
            est = estimate(t, typ)
            i.est[typ] = est
            i.rec[typ] = t .. SEP .. typ .. SEP .. fmt(est) .. SEP
          end
          adm[#adm + 1] = id
          adm[#adm + 1] = i.rec[typ] .. enqs .. SEP .. i.wf .. SEP .. tok
          dl[#dl + 1] = leaseEnd
          dl[#dl + 1] = id
          i.run = i.run + 1
          i.added = i.added or {}
          i.added[#i.added + 1] = id
          out[#out + 1] = id
          out[#out + 1] = NOW - enq
          room = room - 1
          last = best.vt
          best.vt = best.vt + est / i.w
          best.moved = true
        end
      end
    else
      i.left = 0
    end
    if not ok(i) then best.out = true end
  end
  store()
  for t, i in pairs(info) do
    if i.off > 0 then redis.call('LTRIM', P .. 'b:' .. t, i.off - #i.buf + i.pos, -1) end
  end
  if #waited > 0 then many('HDEL', P .. 'msg', waited) end
  if #pushed > 0 then many('LPUSH', A .. 'pending', pushed) end
  if #head > 0 then
    -- asynq takes from the right: the first of them is pushed last.
    local rev = {}
    for k = #head, 1, -1 do rev[#rev + 1] = head[k] end
    many('RPUSH', A .. 'pending', rev)
  end
  if queued == 0 and #pushed + #head > 0 then
    -- Idle workers wait for this (IdleWaiter). A refused publish (an ACL
    -- without PUBLISH) must not undo the admission: they look again at
    -- their next recheck.
    redis.pcall('PUBLISH', P .. 'wake', '')
  end
  if #adm > 0 then
    many('HSET', P .. 'adm', adm)
    many('ZADD', P .. 'dl', dl)
  end
  for t, i in pairs(info) do
    if i.added then
      many('SADD', P .. 'run:' .. t, i.added)
      scanning(t, i.added, i.scan)
    end
    for typ, d in pairs(i.taken) do countWaiting(t, typ, d) end
  end
  if last then redis.call('SET', P .. 'vt', fmt(last)) end
  return out
end
`

// enqueueScript adds tasks of one tenant to its backlog and admits what
// fits.
//
//	ARGV[10] tenant, ARGV[11] weight, ARGV[12] max running, ARGV[13] max waiting, ARGV[14] task count,
//	ARGV[15] most tasks waiting in all the queue's backlogs (0: no cap),
//	ARGV[16] the policy's version (Policy.Version: a recorded policy of a
//	later version stays, see setPolicy), then per task: id, type, replace finished (1/0), asynq message,
//	follow-up id ('' for none), the follow-up's asynq message or '#' and
//	the byte offset of the id field in the task's message: the task's
//	message with the follow-up's id there (followUpArg; built only for a
//	follow-up added).
//
// It returns {'full', waiting, estimate, new tasks, max waiting, max
// running} when the tasks would take the tenant's backlog past max waiting
// (the caps in force: those of a recorded policy of a later version, else
// the call's), {'queue_full', waiting in
// the queue, the queue's cost per task, live worker slots, new tasks} when
// they would take the queue's backlogs past their cap (nothing is added
// either way; new tasks: how many the call would have added), else
// {'ok', results, admitted[, 'lost': the queue's holds are to be put back,
// nothing was admitted (holdsLost)]} where results holds per task 'new', 'waiting'
// (also a task parked with its message kept here, that asynq let go) or
// 'exists:<asynq state>'. A replacing enqueue replaces a finished task
// whose worker has not reported it yet (a worker killed after asynq
// finished it waits out the lease) as any finished one: its run ends here
// (endRun: its slot is freed, its estimate kept for the late report, which
// ends only that run). A run admitted by a release before run tokens
// (its record has none) is 'exists:active' instead until its report or
// lease ends it: a report without a token would end the new run. One
// asynq deleted at once (no retention) is 'new' in the milliseconds
// before its report, and its run is then charged its estimate in full
// (the report names the older run). That state cannot be told from an
// admitted task deleted by hand, whose id must be enqueued again. A task with a
// follow-up whose own id is running ('exists:active') gets its follow-up
// instead, in the same call and under the same caps, as if replacing:
// its result is the follow-up's, prefixed 'follow:'. An id named again in
// the same call gets its first copy's result ('new' turned 'waiting': the
// task is in the backlog then), so that one task answers for both. An attempt a drain
// discarded that asynq brought back (pending or in its retry set, see
// drainScript) does not count as the task: it is taken out of asynq, and
// the task is 'new'.
var enqueueScript = redis.NewScript(prelude + `
local t = ARGV[10]
-- idField is a task id as the id field of an asynq message (tag 26:
-- field 3, bytes; a varint length; the id), as Message.Encode writes it.
local function idField(id)
  local n, v = #id, ''
  while n >= 128 do
    v = v .. string.char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  return '\26' .. v .. string.char(n) .. id
end
-- followMessage is the follow-up's asynq message of the task whose
-- arguments start at ARGV[b]: sent in full, or '#<offset>': the task's
-- message with its id field, at that offset, replaced by the follow-up's.
local function followMessage(b)
  local f = ARGV[b + 5]
  if string.sub(f, 1, 1) ~= '#' then return f end
  local at, msg = tonumber(string.sub(f, 2)), ARGV[b + 3]
  return string.sub(msg, 1, at) .. idField(ARGV[b + 4]) .. string.sub(msg, at + #idField(ARGV[b]) + 1)
end
local known = redis.call('EXISTS', tkey(t), P .. 'b:' .. t, P .. 'run:' .. t) > 0
-- The policy in force (weight, caps, version) is the call's unless one of
-- a later version (Policy.Version) is recorded: P..'t:'..t's, or, for a
-- tenant whose state here records no policy (none at all, or only a
-- drain's scan mark or lists a switch from plain dispatch left), the one
-- SetPolicy left in P..'pp:'..t (policyScript). An enqueue that read the
-- tenant before a limits change that SetPolicy applied meanwhile must
-- neither put the older policy back nor check its own admission against
-- the older caps.
local pol = { ARGV[11], ARGV[12], ARGV[13], ARGV[16] }
do
  local h = known and redis.call('HMGET', tkey(t), 'w', 'mr', 'mw', 'pv') or {}
  if not h[4] then h = redis.call('HMGET', P .. 'pp:' .. t, 'w', 'mr', 'mw', 'pv') end
  if num(ARGV[16], 0) < num(h[4], 0) then pol = h end
end
local function setPolicy()
  redis.call('HSET', tkey(t), 'w', pol[1], 'mr', pol[2], 'mw', pol[3], 'pv', pol[4])
end
-- The policy is written for a tenant with state here, and for one
-- without (first enqueue, or an erased tenant forgotten here) only once
-- a task is added below: a call that adds nothing (refused by a cap, or
-- every task found) leaves no state, which no one would remove after an
-- erasure (the worker that meets an added task forgets an erased
-- tenant's).
if known then setPolicy() end
local mr, mw = num(pol[2], 0), num(pol[3], 0)
local n = num(ARGV[14], 0)
local mt = num(ARGV[15], 0)
local res, fresh, seen = {}, {}, {}
-- Tasks a drain discarded while their workers were handing them back
-- (drainScript), if any.
local drained = redis.call('EXISTS', P .. 'drained') == 1
-- Which of the ids (and follow-up ids) wait in a backlog already, read in
-- one call, and whether t has parked records at all (almost never): the
-- loop below changes neither before it is over.
local waits = {}
do
  local ids = {}
  for i = 0, n - 1 do
    local b = 17 + i * 6
    ids[#ids + 1] = ARGV[b]
    if ARGV[b + 4] ~= '' then ids[#ids + 1] = ARGV[b + 4] end
  end
  waits = hashFields(P .. 'msg', ids)
end
local anyParked = redis.call('EXISTS', keptKey(t), parkedKey(t)) > 0
-- classify says what an enqueue of id finds: 'waiting', 'exists:<state>',
-- or 'new' with the finished asynq state to clear (or nil).
local function classify(id, replace)
  if seen[id] or waits[id] then
    return 'waiting'
  end
  local st = redis.call('HGET', A .. 't:' .. id, 'state')
  if drained and (st == 'retry' or st == 'pending') and discarded(id) then
    -- A discarded attempt asynq brought back (its hand-back lost its
    -- lease): it never runs, so it is not what this enqueue asks for. It
    -- leaves asynq, and the task is added anew.
    unqueue(id, st)
    st = nil
  end
  if not st or st == 'archived' then
    -- Parked with its message kept here (parkRecord), asynq done with it
    -- (or its recoverer archived the last attempt of a worker killed
    -- before the hand-back): it waits for its release to the backlog.
    local pr = anyParked and parkedRecord(t, id)
    if pr and fields(pr, 2)[3] then return 'waiting' end
  end
  local finished = st == 'completed' or st == 'archived'
  if replace and finished then
    local meta = redis.call('HGET', P .. 'adm', id)
    if meta then
      -- Finished, but its worker's report has not come in (a worker
      -- killed after asynq finished the task waits out its lease; a
      -- report in flight). A run with a token ends here (endRun, once
      -- the task is accepted), and its late report ends only that run.
      -- A record of an earlier release has no token: any report of the
      -- id would end the new run and free its slot, so it counts as
      -- running until the report (or its lease) ends it.
      if (fields(meta, 5)[6] or '') == '' then return 'exists:active' end
      return 'new', st, true
    end
  elseif st then
    return 'exists:' .. st
  end
  return 'new', st
end
-- An id named again in the same call gets what its first copy got (a task
-- added by it is waiting now), follow-up included: one answer per task.
local again = {}
for i = 0, n - 1 do
  local b = 17 + i * 6
  local id, typ, fid = ARGV[b], ARGV[b + 1], ARGV[b + 4]
  local r = again[id]
  if not r then
    local st, unreported
    r, st, unreported = classify(id, ARGV[b + 2] == '1')
    seen[id] = true
    if r == 'exists:active' and fid ~= '' then
      r, st, unreported = classify(fid, true)
      seen[fid] = true
      if r == 'new' then fresh[#fresh + 1] = { fid, typ, followMessage(b), st, unreported } end
      r = 'follow:' .. r
    elseif r == 'new' then
      fresh[#fresh + 1] = { id, typ, ARGV[b + 3], st, unreported }
    end
    again[id] = (r == 'new' and 'waiting') or (r == 'follow:new' and 'follow:waiting') or r
  end
  res[i + 1] = r
end
-- What a drain set aside and has not discarded waits too (setAside).
local waiting = redis.call('LLEN', P .. 'b:' .. t) + setAside(t)
if mw > 0 and #fresh > 0 and waiting + #fresh > mw then
  return { 'full', waiting, fmt(estimate(t, ARGV[18])), #fresh, mw, mr }
end
if mt > 0 and #fresh > 0 then
  local total = redis.call('HLEN', P .. 'msg')
  if total + #fresh > mt then
    return { 'queue_full', total, fmt(num(redis.call('HGET', P .. 'cost', '*'), DEFAULT_COST)), num(redis.call('GET', P .. 'cap'), 0), #fresh }
  end
end
local ids, msgs, added = {}, {}, {}
-- What every record of the call holds between its type and its message
-- (the tenant and the enqueue time), made once.
local stamp = SEP .. t .. SEP .. NOW .. SEP
for _, f in ipairs(fresh) do
  local id, typ, msg, st = f[1], f[2], f[3], f[4]
  -- A finished run whose report has not come in ends now: the new task
  -- is admitted under a run of its own (classify).
  if f[5] then endRun(id) end
  if st == 'completed' or st == 'archived' then
    redis.call('ZREM', A .. st, id)
    redis.call('DEL', A .. 't:' .. id)
  end
  -- A new task of the id: a discarded attempt's mark must not hand it back.
  if drained then redis.call('ZREM', P .. 'drained', id) end
  ids[#ids + 1] = id
  msgs[#msgs + 1] = id
  msgs[#msgs + 1] = typ .. stamp .. msg
  added[typ] = (added[typ] or 0) + 1
end
if #ids > 0 then
  if not known then setPolicy() end
  many('HSET', P .. 'msg', msgs)
  many('RPUSH', P .. 'b:' .. t, ids)
  for typ, k in pairs(added) do countWaiting(t, typ, k) end
end
reconsider(t)
-- The queue's holds are lost: admit() admitted nothing, and the caller
-- puts them back (restoreScript), which admits.
if holdsLost() then return { 'ok', res, {}, 'lost' } end
return { 'ok', res, admit() }
`)

// completeScript records finished attempts reported by workers and admits
// what their slots make room for.
//
//	ARGV[10] report count, ARGV[11] reporter id ('' for none), ARGV[12] the
//	batch's sequence number from that reporter, ARGV[13] how long to keep
//	the reporter's record (ms), then per report: task id, tenant, type,
//	cost (us), run token ('' for none), '1' for an attempt cut off under
//	its handler (Report.CutOff) else '0'.
//
// A task that asynq put back to pending (shutdown) stays admitted; its cost
// so far is charged all the same. A cut-off attempt (a shutdown that
// stopped waiting for its handler, a lost lease) is charged its whole cost
// and ends nothing: its run goes on (asynq put the task back) and its
// report corrects the estimate, or the lease check ends it (asynq retries
// the task under a run of its own) and refunds the estimate (P..'cut:');
// the cost estimates do not learn from a cut-off attempt's time. Unless
// asynq no longer holds the task pending or active when the report comes:
// asynq failed the attempt itself (cancelled from its dashboard, it goes
// into the retry set or the archive), and the report ends the run and
// corrects its estimate as any report does, freeing the slot at once (and
// blanks the run in asynq's copy of the message, as reap does). A
// cut-off report of a run asynq still holds brings the run's lease check
// forward to CUT_RECHECK from now, so that a dashboard's cancel whose
// report came before asynq's own write frees the slot at the next
// heartbeat after it (a run that goes on gets its lease again).
//
// A report with a run token ends the task's admission only when the
// record is of that run: a report of an earlier run of the id (sent late,
// after its lease ran out and the id was admitted again, or after asynq's
// retry of it took a slot at the gate) leaves the run admitted since in
// place. A report without a token (Dispatcher.Complete, a worker of a
// release before run tokens) and a record without one (admitted by such a
// release) end whatever run of the id is admitted, as before.
//
// The tenant pays each run once, its measured cost when it is reported:
// the estimate charged at admission is corrected by the report of that
// run, also when the lease check ended the run before the report came
// (reap kept the estimate under the run's token, P..'lr:'). A report of a
// run whose estimate is known to no one (a retry the gate let run, a
// report without a token whose run the lease check ended) is charged in
// full.
//
// A batch from a Reporter is applied at most once: P..'rep:'..reporter
// holds the highest sequence number of that reporter's batches applied in
// this queue, and a batch at or below it (a batch the Reporter sent again
// after an ambiguous error, its first send applied) is skipped. Applied
// twice, its reports would end whatever run of their task ids was admitted
// in between (a retry, a replacement): a slot of a task still running
// would be freed, and its tenant could run past its cap. A Reporter sends
// the batches of a queue in order and sends a failed batch again whole,
// before any later one, so a sequence number at or below the record was
// applied. A call without a reporter id (Dispatcher.Complete, a worker of
// a release before this record) is applied as it comes, as before.
//
// It returns admit()'s list.
var completeScript = redis.NewScript(prelude + `
-- CUT_RECHECK is how soon (ms) the lease check looks again at a run whose
-- attempt was reported cut off while asynq still held it (see above).
local CUT_RECHECK = 1000
local n = num(ARGV[10], 0)
local rid, rseq = ARGV[11], num(ARGV[12], 0)
if rid ~= '' and num(redis.call('GET', P .. 'rep:' .. rid), -1) >= rseq then
  return admit()
end
local seen, done, runs = {}, {}, {}
local tenants = {}      -- tenant -> {delta = (cost - estimate) / weight, summed; costs = {type -> {cost, ...}}} or false
local byType, all = {}, {}
-- The admission records of the batch, read in one call (nothing below
-- changes them before the loop is over).
local recs = {}
do
  local ids = {}
  for i = 0, n - 1 do ids[#ids + 1] = ARGV[14 + i * 6] end
  recs = hashFields(P .. 'adm', ids)
end
for i = 0, n - 1 do
  local b = 14 + i * 6
  local id, t, typ, cost, run = ARGV[b], ARGV[b + 1], ARGV[b + 2], num(ARGV[b + 3], 0), ARGV[b + 4]
  -- A cut-off attempt is charged in full and ends nothing (see above).
  local cut = ARGV[b + 5] == '1'
  local est, w, ended, over = 0, nil, false, false
  if cut and run ~= '' then
    local meta = recs[id]
    if meta and (fields(meta, 5)[6] or '') == run then
      local st = redis.call('HGET', A .. 't:' .. id, 'state')
      if st ~= 'pending' and st ~= 'active' then
        -- asynq failed the attempt itself (a cancel from its dashboard:
        -- into its retry set, or archived) or its recoverer did: the run
        -- is over, and this report ends it as any other would. asynq's
        -- copy of the message names the run no more, as the lease check
        -- does it (reap): run again from the dashboard, the task asks the
        -- gate.
        over = true
        if st == 'archived' or st == 'retry' or st == 'scheduled' then
          local msg = redis.call('HGET', A .. 't:' .. id, 'msg')
          if msg then redis.call('HSET', A .. 't:' .. id, 'msg', withRun(withoutRun(msg), '')) end
        end
      else
        -- Should the lease check end this run without another report
        -- (asynq retries the task under a run of its own), the cut
        -- attempt's charge stands for the run's, and the estimate goes
        -- (reap). asynq may be about to fail the attempt (a dashboard's
        -- cancel races its handler's report): the check comes within
        -- CUT_RECHECK, not a whole lease later.
        redis.call('SET', P .. 'cut:' .. run, '1', 'PX', LATE_MS)
        local due = num(redis.call('ZSCORE', P .. 'dl', id), nil)
        if due and due > NOW + CUT_RECHECK then redis.call('ZADD', P .. 'dl', NOW + CUT_RECHECK, id) end
      end
    end
  end
  if (over or not cut) and not seen[id] and redis.call('HGET', A .. 't:' .. id, 'state') ~= 'pending' then
    local meta = recs[id]
    local f = meta and fields(meta, 5)
    if f and run ~= '' and (f[6] or '') ~= '' and f[6] ~= run then f = nil end
    if f then
      ended = true
      seen[id] = true
      done[#done + 1] = id
      runs[f[1]] = runs[f[1]] or {}
      table.insert(runs[f[1]], id)
      est = num(f[3], 0)
      -- The correction goes over the weight the estimate was charged
      -- over: a weight changed meanwhile must not turn it into a gain.
      w = num(f[5], nil)
      if w and w < 1 then w = 1 end
    end
  end
  if not ended and run ~= '' then
    -- A run the lease check ended before this report came: its estimate
    -- was charged at admission, and this report corrects it (once), also
    -- a cut-off attempt's (the run is over).
    local late = redis.call('GET', P .. 'lr:' .. run)
    local lf = late and fields(late, 2)
    if lf and lf[1] == id then
      redis.call('DEL', P .. 'lr:' .. run)
      est = num(lf[2], 0)
      w = num(lf[3], nil)
      if w and w < 1 then w = 1 end
    end
  end
  local s = tenants[t]
  if s == nil then
    -- A tenant without state (no weight) was never admitted here or has
    -- been forgotten (erased): only the type's cost learns from it.
    local h = redis.call('HMGET', tkey(t), 'w', 'vt')
    s = h[1] and { w = math.max(num(h[1], 1), 1), vt = num(h[2], 0), delta = 0, costs = {} } or false
    tenants[t] = s
  end
  if s then
    s.delta = s.delta + (cost - est) / (w or s.w)
    if not cut then
      s.costs[typ] = s.costs[typ] or {}
      table.insert(s.costs[typ], cost)
    end
  end
  if not cut then
    byType[typ] = byType[typ] or {}
    table.insert(byType[typ], cost)
    all[#all + 1] = cost
  end
end
if #done > 0 then
  many('HDEL', P .. 'adm', done)
  many('ZREM', P .. 'dl', done)
end
for t, ids in pairs(runs) do many('SREM', P .. 'run:' .. t, ids) end
for t, s in pairs(tenants) do
  if s then
    -- Charge the difference to the estimate. A tenant in the ready set
    -- stays there (finished tasks only free its slots); one outside it may
    -- have become eligible by the slots freed here.
    local d = s.delta
    local r = redis.call('ZSCORE', P .. 'ready', t)
    if r then
      if d ~= 0 then redis.call('ZADD', P .. 'ready', fmt(tonumber(r) + d), t) end
    else
      if d ~= 0 then redis.call('HSET', tkey(t), 'vt', fmt(s.vt + d)) end
      reconsider(t)
    end
    for typ, costs in pairs(s.costs) do ewmaAll(tkey(t), 'c:' .. typ, costs) end
  end
end
-- The queue gone idle (no tenant ready, nothing admitted): its virtual
-- time moves up to the latest a tenant reported here reached, as start-time
-- fair queueing does when the server idles. What a tenant's tasks cost
-- beyond their estimates while no other tenant wanted the workers is then
-- not owed when tenants come back; while others wait, it is.
if next(tenants) ~= nil and redis.call('ZCARD', P .. 'ready') == 0 and redis.call('HLEN', P .. 'adm') == 0 then
  local v = vnow()
  local top = v
  for t, s in pairs(tenants) do
    if s then
      local vt = num(redis.call('HGET', tkey(t), 'vt'), 0)
      if vt > top then top = vt end
    end
  end
  if top > v then redis.call('SET', P .. 'vt', fmt(top)) end
end
for typ, costs in pairs(byType) do ewmaAll(P .. 'cost', typ, costs) end
if #all > 0 then ewmaAll(P .. 'cost', '*', all) end
if rid ~= '' then redis.call('SET', P .. 'rep:' .. rid, ARGV[12], 'PX', ARGV[13]) end
return admit()
`)

// policyScript applies a tenant's changed policy in this queue at once,
// not at its next enqueue: a tenant with a backlog that enqueues nothing
// more would otherwise keep its old weight and caps until the backlog is
// gone. A tenant without state here (it never enqueued in this queue, or
// was forgotten) gets none: its next enqueue brings the policy. A policy
// recorded here of a later version (Policy.Version) stays, unless the
// call resets it (Dispatcher.ResetPolicy: the catalog went back in time).
// For a tenant without state the policy is kept aside for a while
// (P..'pp:'..tenant, ARGV[16] ms), so that an enqueue on its way with the
// tenant as it was before, the tenant's first here, does not bring the
// older one (enqueueScript); a reset drops what is kept aside instead.
//
//	ARGV[10] tenant, ARGV[11] weight, ARGV[12] max running, ARGV[13] max waiting,
//	ARGV[14] the policy's version, ARGV[15] '1' to replace a recorded
//	policy whatever its version, else '0', ARGV[16] how long a policy
//	stays aside (ms).
//
// It returns admit()'s list.
var policyScript = redis.NewScript(prelude + `
local t = ARGV[10]
local pp = P .. 'pp:' .. t
if ARGV[15] == '1' then
  -- A reset: no policy set aside before it may stand (its version is
  -- later; the catalog's rows do not change with the reset), also for a
  -- tenant with state here, whose state may go before its next enqueue.
  redis.call('DEL', pp)
end
if redis.call('EXISTS', tkey(t)) == 0 then
  if ARGV[15] ~= '1' and num(ARGV[14], 0) >= num(redis.call('HGET', pp, 'pv'), 0) then
    redis.call('HSET', pp, 'w', ARGV[11], 'mr', ARGV[12], 'mw', ARGV[13], 'pv', ARGV[14])
    redis.call('PEXPIRE', pp, ARGV[16])
  end
  return {}
end
if ARGV[15] ~= '1' and num(ARGV[14], 0) < num(redis.call('HGET', tkey(t), 'pv'), 0) then return {} end
redis.call('HSET', tkey(t), 'w', ARGV[11], 'mr', ARGV[12], 'mw', ARGV[13], 'pv', ARGV[14])
reconsider(t)
return admit()
`)

// nowScript returns the scripts' clock (NOW of the prelude, Unix ms), for
// what the Go side compares with the times the scripts wrote. Its ARGV is
// the common one; it stands alone, so that a pipeline can send it whole.
const nowScript = `
if ARGV[1] ~= '' then return ARGV[1] end
local tm = redis.call('TIME')
return string.format('%d', tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000))
`

// pumpScript admits what fits; workers run it periodically as a safety
// net (enqueues and completions admit on their own).
var pumpScript = redis.NewScript(prelude + `
return admit()
`)

// healPrelude repairs, a little per heartbeat, what a partial loss of
// Redis's data leaves of the dispatcher's state (an evicting
// maxmemory-policy or a key deleted by hand: Redis loses whole keys):
// without it a tenant whose place in the ready set is gone waits until
// its next enqueue or report, waiting tasks whose backlog list is gone
// are never admitted (and their ids are answered "waiting" to every
// enqueue), and an admitted task whose lease entry is gone keeps its
// tenant's slot forever.
//
// It acts only where an invariant every other script keeps between calls
// is broken, so it does nothing in normal operation:
//
//   - a tenant in the ready set is eligible, and an eligible tenant is in
//     it (reconsider; a tenant whose drain mark expired is the heartbeat's
//     undrain's to bring back, not this);
//   - a tenant's count in P..'depth' is its backlog's length, unless a
//     drain set some of its tasks aside (P..'dr:'..tenant) or a Forget is
//     between its steps (a shorter list only marks the tenant, below);
//   - a waiting task's record (P..'msg') is in its tenant's backlog list,
//     unless a drain set it aside;
//   - every member of P..'run:'..tenant has an admission record
//     (P..'adm'), and every admission record a lease entry (P..'dl').
//
// Each beat looks at 20 waiting tenants (P..'depth', by rank), 20 waiting
// tasks and 10 admitted ones (HSCAN cursors), the cursors kept in
// P..'heal', so every record is looked at within a sweep. A tenant whose
// backlog list is gone, or shorter than its count, is marked in
// P..'lost'; for two sweeps of P..'msg' after, its waiting tasks missing
// from its list go back into it (restore: in enqueue order), and then its
// count is set to its list's length. Telling whether a task is in a list
// takes LPOS, and putting it back a merge (restore), both linear in the
// list: a beat spends at most HEAL_BUDGET list elements on them, and a
// task of a list longer than what is left of that is looked at again in a
// later sweep (its tenant stays marked), once admission has shortened the
// list. It returns how many waiting tasks it put back, how many admitted
// tasks it repaired, and how many tenants it put back into the ready set.
const healPrelude = `
local HEAL_BUDGET = 10000
local function heal()
  local H = P .. 'heal'
  local back, fixed, readied = 0, 0, 0
  local function intact(t)
    return not draining(t) and redis.call('EXISTS', P .. 'dr:' .. t) == 0
  end
  local cur = redis.call('HMGET', H, 'depth', 'msg', 'adm', 'cycle')
  local cycle = num(cur[4], 0)
  local anyLost = redis.call('EXISTS', P .. 'lost') == 1
  local function mark(t)
    redis.call('ZADD', P .. 'lost', 'NX', cycle, t)
    anyLost = true
  end
  -- Waiting tenants: a backlog list shorter than the count marks the
  -- tenant; admitted ids without their record get one back (still in
  -- asynq) or leave the running set; an eligible tenant out of the ready
  -- set goes back into it.
  local from = num(cur[1], 0)
  local ts = redis.call('ZRANGE', P .. 'depth', from, from + 19, 'WITHSCORES')
  if #ts < 40 then from = 0 else from = from + 20 end
  for i = 1, #ts, 2 do
    local t = ts[i]
    local n = redis.call('LLEN', P .. 'b:' .. t)
    local ok = nil
    if tonumber(ts[i + 1]) > n then
      ok = intact(t)
      if ok then mark(t) end
    end
    local ids = redis.call('SRANDMEMBER', P .. 'run:' .. t, 10)
    if #ids > 0 then
      local recs = redis.call('HMGET', P .. 'adm', unpack(ids))
      for j, id in ipairs(ids) do
        if not recs[j] then
          local st = redis.call('HGET', A .. 't:' .. id, 'state')
          if st == 'pending' or st == 'active' then
            redis.call('HSET', P .. 'adm', id, t .. SEP .. SEP .. '0' .. SEP .. fmt(NOW) .. SEP .. SEP)
            redis.call('ZADD', P .. 'dl', NOW + LEASE, id)
          else
            redis.call('SREM', P .. 'run:' .. t, id)
          end
          fixed = fixed + 1
        end
      end
    end
    if n > 0 and not redis.call('ZSCORE', P .. 'ready', t) and eligible(t) then
      if ok == nil then ok = intact(t) end
      if ok then
        reconsider(t)
        readied = readied + 1
      end
    end
  end
  -- Waiting tasks: of a marked tenant (or one whose list is gone), those
  -- not in its backlog list go back into it.
  local r = redis.call('HSCAN', P .. 'msg', cur[2] or '0', 'COUNT', 20)
  local seen, lost, budget = {}, {}, HEAL_BUDGET
  for i = 1, #r[2], 2 do
    local id, f = r[2][i], fields(r[2][i + 1], 3)
    local t = f[2]
    local s = seen[t]
    if not s then
      s = { n = redis.call('LLEN', P .. 'b:' .. t) }
      s.lost = anyLost and redis.call('ZSCORE', P .. 'lost', t) ~= false
      if s.n == 0 or s.lost then s.ok = intact(t) end
      if s.n == 0 and s.ok and not s.lost then
        mark(t)
        s.lost = true
      end
      seen[t] = s
    end
    if s.lost and s.ok then
      local missing = s.n == 0
      if s.n > budget then
        -- Too long to look through now: again in the next sweep.
        redis.call('ZADD', P .. 'lost', 'XX', cycle, t)
        missing = false
      elseif not missing then
        budget = budget - s.n
        missing = not redis.pcall('LPOS', P .. 'b:' .. t, id)
      end
      if missing then
        lost[t] = lost[t] or {}
        table.insert(lost[t], { id, num(f[3], 0) })
      end
    end
  end
  for t, es in pairs(lost) do
    -- restore merges them with the older tasks at the list's front:
    -- linear in the list too.
    local n = seen[t].n
    if n <= budget then
      budget = budget - n
      table.sort(es, function(a, b) return a[2] < b[2] or (a[2] == b[2] and a[1] < b[1]) end)
      local ids, enqs = {}, {}
      for _, e in ipairs(es) do ids[#ids + 1], enqs[#enqs + 1] = e[1], e[2] end
      restore(t, ids, enqs)
      back = back + #ids
      reconsider(t)
    else
      redis.call('ZADD', P .. 'lost', 'XX', cycle, t)
    end
  end
  if r[1] == '0' then
    -- A sweep of the waiting tasks is over: a tenant marked before the
    -- one before it has had all its tasks looked at since. Its count is
    -- then its list's length, so that a count that drifted does not mark
    -- it again.
    cycle = cycle + 1
    for _, t in ipairs(redis.call('ZRANGEBYSCORE', P .. 'lost', '-inf', cycle - 2)) do
      redis.call('ZREM', P .. 'lost', t)
      if intact(t) then
        local n = redis.call('LLEN', P .. 'b:' .. t)
        if n > 0 then redis.call('ZADD', P .. 'depth', n, t) else redis.call('ZREM', P .. 'depth', t) end
      end
    end
  end
  -- Admitted tasks without a lease entry are checked at the next reap.
  local a = redis.call('HSCAN', P .. 'adm', cur[3] or '0', 'COUNT', 10)
  for i = 1, #a[2], 2 do
    if not redis.call('ZSCORE', P .. 'dl', a[2][i]) then
      redis.call('ZADD', P .. 'dl', NOW, a[2][i])
      fixed = fixed + 1
    end
  end
  redis.call('HSET', H, 'depth', from, 'msg', r[1], 'adm', a[1], 'cycle', cycle)
  return back, fixed, readied
end
`

// heartbeatScript registers a worker's concurrency for this queue until
// now + ttl, drops expired workers, stores the sum that sizes the pending
// depth, and admits what fits. It returns {admit()'s list, the counts of
// heal(), 1 when the queue's holds are to be put back (holdsLost) else 0}.
//
//	ARGV[10] worker id, ARGV[11] concurrency (0: leaving), ARGV[12] ttl (ms),
//	ARGV[13] how often the beats of all workers repair (heal; ms, 0: every beat).
var heartbeatScript = redis.NewScript(prelude + drainPrelude + healPrelude + `
local id, c, ttl, healEvery = ARGV[10], num(ARGV[11], 0), num(ARGV[12], 0), num(ARGV[13], 0)
if c > 0 then
  redis.call('ZADD', P .. 'workers', NOW + ttl, id)
  redis.call('HSET', P .. 'conc', id, c)
else
  redis.call('ZREM', P .. 'workers', id)
  redis.call('HDEL', P .. 'conc', id)
end
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', P .. 'workers', '-inf', NOW)) do
  redis.call('ZREM', P .. 'workers', dead)
  redis.call('HDEL', P .. 'conc', dead)
end
local sum = 0
for _, v in ipairs(redis.call('HVALS', P .. 'conc')) do sum = sum + num(v, 0) end
redis.call('SET', P .. 'cap', sum)
redis.call('ZREMRANGEBYSCORE', P .. 'hb', '-inf', NOW)
-- Parked tasks of tenants no longer held that asynq still held as active
-- when their hold was lifted, and retries parked at the running cap: once
-- asynq let them go (or has them in its retry set) they go back to their
-- backlog. At most 20 tenants of each set (keptt, parkedt) a beat; the
-- previous release's heartbeat walks parkedt only, so what is kept here
-- is released by this release's workers only.
local walked = {}
for _, set in ipairs({ 'keptt', 'parkedt' }) do
  for _, t in ipairs(redis.call('SRANDMEMBER', P .. set, 20)) do
    if not walked[t] and not held(t) then
      walked[t] = true
      releaseParked(t)
      reconsider(t)
    end
  end
end
-- A drain whose caller went away between its steps: its mark expired.
-- What its steps did not discard goes back to the backlog, 5,000 tasks a
-- beat. One whose caller went away while it went through asynq's sets
-- and pending list: its scan mark, which each of its calls moves on,
-- lapsed (no drain of the tenant scans any more); the mark and the list
-- of the tenant's scanning drains go (their sets of the tasks to leave
-- expire on their own).
local back = 5000
for _, t in ipairs(redis.call('SRANDMEMBER', P .. 'draining', 20)) do
  if not draining(t) then
    local moved, over = undrain(t, back)
    back = back - moved
    if over then
      redis.call('HDEL', tkey(t), 'drain')
      if num(redis.call('HGET', tkey(t), 'scan'), 0) <= NOW then
        redis.call('HDEL', tkey(t), 'scan')
        redis.call('DEL', P .. 'drs:' .. t)
        redis.call('SREM', P .. 'draining', t)
      end
    end
    reconsider(t)
  end
end
-- Tasks a drain discarded while their workers were handing them back
-- (drainScript): a mark has done its work once asynq let the task go; a
-- task asynq brought back instead (pending, or in its retry set) is taken
-- out of asynq here, before a worker takes it. Marks end at their expiry.
redis.call('ZREMRANGEBYSCORE', P .. 'drained', '-inf', NOW)
for _, id in ipairs(redis.call('ZRANGE', P .. 'drained', 0, 19)) do
  local st = redis.call('HGET', A .. 't:' .. id, 'state')
  if st == 'retry' or st == 'pending' then unqueue(id, st) end
  if st ~= 'active' then redis.call('ZREM', P .. 'drained', id) end
end
local back, fixed, readied = 0, 0, 0
if healEvery <= 0 or redis.call('SET', P .. 'healed', '1', 'PX', healEvery, 'NX') then
  back, fixed, readied = heal()
end
local lost = 0
if holdsLost() then lost = 1 end
return { admit(), back, fixed, readied, lost }
`)

// restoreScript puts back the holds a loss of Redis's data took (the
// marker P..'holds', KEYS[3], is gone: holdsLost), from the durable record
// Config.Holds reads, and writes the marker: until then admit() admits
// nothing in the queue. Of the workers that notice the loss, the first
// one's call restores; the others' find the marker and change nothing.
//
//	ARGV[10] number of tenants n, then n pairs: tenant, its reasons ('s', 'p').
//
// A reason is added to what the tenant's hold has (nothing it has is
// taken away), unless a release of that reason came while the marker was
// gone (P..'unheld': the record may have been read before it). A tenant
// whose hold is put back is taken out of the ready set, and its admitted
// tasks that asynq has not started go back into its backlog, as for a
// Hold. It returns {tenants held again, tasks moved back, admit()'s list}.
var restoreScript = redis.NewScript(prelude + `
if not holdsLost() then return { 0, 0, {} } end
local unheld = {}
local u = redis.call('HGETALL', P .. 'unheld')
for i = 1, #u, 2 do unheld[u[i]] = u[i + 1] end
local restored, tenants = {}, 0
for k = 0, num(ARGV[10], 0) - 1 do
  local t, r = ARGV[11 + 2 * k], ARGV[12 + 2 * k]
  local h = redis.call('HGET', P .. 'hold', t) or ''
  local gone, added = unheld[t] or '', false
  for c in string.gmatch(r, '[spm]') do
    if not string.find(gone, c, 1, true) and not string.find(h, c, 1, true) then
      h = h .. c
      added = true
    end
  end
  if added then
    redis.call('HSET', P .. 'hold', t, h)
    reconsider(t)
    unrun(t)
    restored[t] = true
    tenants = tenants + 1
  end
end
local moved = 0
if tenants > 0 then
  -- One pass over asynq's pending list (newest first, as in holdScript).
  for _, id in ipairs(redis.call('LRANGE', A .. 'pending', 0, -1)) do
    local meta = redis.call('HGET', P .. 'adm', id)
    local t = meta and fields(meta, 1)[1]
    if t and restored[t] then
      local key = A .. 't:' .. id
      if redis.call('HGET', key, 'state') == 'pending' then
        holdBack(t, id, key)
        moved = moved + 1
      end
    end
  end
end
redis.call('SET', M, '1')
redis.call('DEL', P .. 'unheld')
return { tenants, moved, admit() }
`)

// parkScript is run by a worker that dequeued a task of a held tenant
// (the tenant was suspended or paused after the task was admitted).
//
//	ARGV[10] task id, ARGV[11] tenant, ARGV[12] type, ARGV[13] the run
//	token the worker's attempt runs under ('' or absent: none known).
//
// When the tenant is still held, the task leaves the admitted set and is
// recorded as parked with its message (parkRecord: the worker then hands
// it back with asynq.RevokeTask, and asynq lets it go without archiving it
// or counting a retry, also on its last attempt) and 'parked' is returned;
// releasing the hold brings it back into the backlog once asynq has let
// it go (and its hand-back can no longer come again, releaseParked).
// Otherwise 'free'.
//
// With a run token, the call ends only that run: when the admission
// record names another run (the id was admitted again, or a retry of it
// let run at the gate, after this attempt's lease ran out: the call came
// late), nothing changes and 'stale' is returned. Ending that run would
// free its slot while it runs, and parking the task would record the new
// run's message, which the release would then run a second time. Without
// a token (a worker of an earlier release) whatever run of the id is
// admitted is ended, as before.
//
// A task a drain discarded while its worker was handing it back, which
// asynq brought back to a worker all the same (P..'drained'), is neither
// parked nor run: 'drained' is returned, and the worker hands it back.
var parkScript = redis.NewScript(prelude + `
local id, t, typ, run = ARGV[10], ARGV[11], ARGV[12], ARGV[13] or ''
if discarded(id) and redis.call('HEXISTS', P .. 'adm', id) == 0 then return 'drained' end
if not held(t) then return 'free' end
local meta = redis.call('HGET', P .. 'adm', id)
if meta and run ~= '' then
  local tok = fields(meta, 5)[6] or ''
  if tok ~= '' and tok ~= run then return 'stale' end
end
-- It will be admitted (and charged) again on release: refund this time.
local ft, _, est, enq, w = finish(id)
if ft then charge(ft, -est / w) end
enq = enq or parkedSince(t, id)
park(t, id, typ, enq or unknownEnq(t))
return 'parked'
`)

// gateScript is run by a worker about to run a task asynq retried (it came
// back from asynq's retry set, not through admission).
//
//	ARGV[10] task id, ARGV[11] tenant, ARGV[12] type.
//
// An admitted task returns 'admitted'. Otherwise, when the tenant is
// neither held nor at its running cap, the task is counted as running
// (admitted, with no estimate: its report charges its whole cost) and
// 'run' is returned. Else it is recorded as parked with its message
// (parkRecord), 'parked' is returned (the worker hands it back with
// asynq.RevokeTask: no retry counted, not archived on its last attempt),
// and the next heartbeat of any worker (or the tenant's release) puts it
// back into the tenant's backlog once asynq has let it go (and its
// hand-back can no longer come again, releaseParked), in front of the
// tasks that waited when it was parked (unknownEnq), from where it is
// admitted in turn, under the cap.
//
// A task that may run ('admitted' or 'run') gets a run token of its own,
// returned after a tab, which its report names. An admitted task's record
// takes it in place of the admission's, so that the late report of the
// attempt before (under the admission's token, which asynq's message
// still carries) does not end this one.
//
// Workers also ask it for a first attempt whose message names no run: one
// parked here that asynq put back into its pending list instead of
// letting it go (parkRecord), one admitted by the previous release, or
// one that reached asynq past the dispatcher. A task a drain discarded
// while its worker was handing it back, which asynq brought back to a
// worker all the same (its lease lost, or put back by a shutdown), gets
// 'drained': it is not run, and the worker hands it back.
var gateScript = redis.NewScript(prelude + `
local id, t, typ = ARGV[10], ARGV[11], ARGV[12]
-- unpark drops a parked record of the task, which runs now: asynq did not
-- let it go (its worker lost its lease before handing it back, and asynq's
-- recoverer retried it), and released once the run is over it would run
-- again.
local function unpark()
  redis.call('HDEL', keptKey(t), id)
  redis.call('HDEL', parkedKey(t), id)
end
local meta = redis.call('HGET', P .. 'adm', id)
if meta and held(t) then
  -- An admitted task of a held tenant that reached a worker past the
  -- hold: a shutdown put it back into asynq's pending list while it ran
  -- when the hold came (the hold blanked its run header), or asynq retried
  -- it (its worker killed, its lease lost). It must not run while held: it
  -- is parked as parkScript parks it.
  local ft, _, est, enq, w = finish(id)
  if ft then charge(ft, -est / w) end
  park(t, id, typ, enq or parkedSince(t, id) or unknownEnq(t))
  return 'parked'
end
if meta then
  unpark()
  local f = fields(meta, 5)
  local tok = fmt(takeTokens(1) + 1)
  redis.call('HSET', P .. 'adm', id, f[1] .. SEP .. (f[2] or '') .. SEP .. (f[3] or '0') .. SEP .. (f[4] or '') .. SEP .. (f[5] or '') .. SEP .. tok)
  return 'admitted' .. SEP .. tok
end
if discarded(id) then return 'drained' end
local mr = num(redis.call('HGET', tkey(t), 'mr'), 0)
if not held(t) and not draining(t) and (mr == 0 or redis.call('SCARD', P .. 'run:' .. t) < mr) then
  unpark()
  local tok = fmt(takeTokens(1) + 1)
  redis.call('HSET', P .. 'adm', id, t .. SEP .. typ .. SEP .. '0' .. SEP .. fmt(NOW) .. SEP .. SEP .. tok)
  redis.call('ZADD', P .. 'dl', NOW + LEASE, id)
  redis.call('SADD', P .. 'run:' .. t, id)
  scanning(t, { id })
  reconsider(t)
  return 'run' .. SEP .. tok
end
park(t, id, typ, parkedSince(t, id) or unknownEnq(t))
return 'parked'
`)

// holdScript sets or clears one hold reason of a tenant.
//
//	ARGV[10] tenant, ARGV[11] reason ('s', 'p' or 'm'), ARGV[12] '1' set / '0' clear /
//	'2' leave the reasons as they are (a Release's retry for parked tasks).
//
// Setting a reason takes the tenant out of the ready set and moves its
// admitted tasks that asynq has not started back into its backlog, at
// their place by enqueue time (restore); it returns {moved back, 0}.
// Clearing the last reason brings parked tasks back into the backlog the
// same way (releaseParked) and admits; it returns {released, still active,
// admit()'s list}: a parked task still active is on its way to the retry
// set, and the caller releases again shortly.
var holdScript = redis.NewScript(prelude + `
local t, r, set = ARGV[10], ARGV[11], ARGV[12] == '1'
local h = redis.call('HGET', P .. 'hold', t) or ''
if ARGV[12] ~= '2' then
  -- '2': a Release retrying for parked tasks still handed back leaves
  -- the reasons as they are now (a Hold made since stands).
  h = string.gsub(h, r, '')
  if set then h = h .. r end
  if h == '' then redis.call('HDEL', P .. 'hold', t) else redis.call('HSET', P .. 'hold', t, h) end
  if holdsLost() then
    -- The holds are to be put back from a record read before this
    -- release, perhaps: restoreScript leaves out the reasons released
    -- meanwhile (P..'unheld'), and keeps a reason set again.
    local u = string.gsub(redis.call('HGET', P .. 'unheld', t) or '', r, '')
    if not set then u = u .. r end
    if u == '' then redis.call('HDEL', P .. 'unheld', t) else redis.call('HSET', P .. 'unheld', t, u) end
  end
end
if set then
  reconsider(t)
  local moved = 0
  -- asynq's pending list is newest first: in this order each task goes
  -- back in front of the one before (restore), in one push.
  for _, id in ipairs(redis.call('LRANGE', A .. 'pending', 0, -1)) do
    if redis.call('SISMEMBER', P .. 'run:' .. t, id) == 1 then
      local key = A .. 't:' .. id
      if redis.call('HGET', key, 'state') == 'pending' then
        holdBack(t, id, key)
        moved = moved + 1
      end
    end
  end
  unrun(t)
  return { moved, 0 }
end
if h ~= '' then return { 0, 0 } end
local released, active = releaseParked(t)
reconsider(t)
return { released, active, admit() }
`)

// drainPrelude is what drainScript and heartbeatScript add to the prelude.
//
// A drain sets the tenant's backlog aside at its first step, as a list of
// its own; its steps discard from that list. P..'dr:'..tenant orders the
// drains under way by a sequence number (P..'drseq'): a drain also works
// through the lists of the drains that began before it (one whose caller
// went away, or one still running), never through a later one's.
const drainPrelude = `
local function drainList(t, tok) return P .. 'dr:' .. t .. ':' .. tok end

-- undrain puts back into t's backlog, in enqueue-time order (restore),
-- up to max tasks of its drains' lists, once their callers went away
-- between steps (the tenant's drain mark expired): an interrupted drain
-- discards what its steps discarded and nothing more. It returns how many
-- it moved and whether no drain of t is left.
local function undrain(t, max)
  local moved = 0
  -- The latest drain's list first, from its end: what comes back later
  -- is older, and goes in front of it.
  for _, tok in ipairs(redis.call('ZREVRANGE', P .. 'dr:' .. t, 0, -1)) do
    local l = drainList(t, tok)
    if moved < max then
      local ids = redis.call('LRANGE', l, -(max - moved), -1)
      if #ids > 0 then
        redis.call('LTRIM', l, 0, -(#ids + 1))
        restore(t, ids, nil)
        moved = moved + #ids
      end
    end
    if redis.call('LLEN', l) == 0 then redis.call('ZREM', P .. 'dr:' .. t, tok) end
  end
  return moved, redis.call('ZCARD', P .. 'dr:' .. t) == 0
end
`

// drainScript discards a tenant's waiting tasks in this queue: its
// backlog, its admitted tasks asynq has not started, and its parked ones.
// Running tasks finish. It discards at most ARGV[11] waiting tasks per
// call, so that a large backlog does not hold Redis (every worker's
// dequeue waits behind a script) for long: Dispatcher.Drain calls it again
// while waiting tasks remain.
//
//	ARGV[10] tenant, ARGV[11] most waiting tasks to discard, ARGV[12] "1"
//	on the first call (the backlog is set aside, the admitted and parked
//	tasks go), ARGV[13] the drain's token (unique per Dispatcher.Drain),
//	ARGV[14] how long a discarded task's mark in P..'drained' lasts (ms),
//	ARGV[15..] on the first call, the tenant's task id stems when the drain
//	then goes through asynq's sets (Config.TaskIDs; see unscheduleScript).
//
// With the stems, the first call also records which of the tenant's tasks
// asynq holds as active (its active list, as long as the running attempts
// of every worker of the queue) in P..'drr:'..tenant..':'..token: those
// are running, not waiting, and should one's attempt fail while the drain
// goes through asynq's sets, its retry stays, wherever the drain's scan
// is when asynq moves it into the retry set. So do the tasks admitted (or
// let run by the gate) from then until the drain has gone through asynq's
// sets and pending list: the tenant's tasks enqueued after it began, or
// put back into the backlog, that run and fail meanwhile (scanning; the
// drain is listed in P..'drs:'..tenant until drainScansEndScript).
//
// A parked task whose worker is still handing it back (asynq holds it as
// active) is discarded and counted, and marked in P..'drained': should the
// hand-back not reach asynq (the worker's lease ran out first, and asynq's
// recoverer retries the task; or a shutdown put it back to pending),
// asynq brings the attempt back to a worker, and the gate and the park
// script answer 'drained' for it, so it never runs. The mark outlasts
// asynq's lease and its recoverer's period; the heartbeat drops it once
// asynq has let the task go, or takes the task out of asynq if asynq holds
// it pending or in its retry set; an enqueue of the id that adds a new
// task ends it.
//
// The first call moves the backlog whole (RENAME, constant time) to the
// drain's own list (see drainPrelude); the steps discard from it, and
// from the lists of drains that began earlier and are not done. So a
// drain discards what waited when it began, all of it, whatever happens
// between its steps: tasks enqueued meanwhile, and tasks a hold or release
// puts back at the front of the backlog (they were admitted, running or
// parked when it began), go to the backlog and stay.
//
// Between steps the tenant is marked draining: admission skips it. The
// mark expires a minute after the last step; a drain whose caller went
// away then has the rest of its list put back into the backlog, in
// enqueue-time order with what went back there meanwhile, by the heartbeat
// (undrain). Likewise the scan mark (the t: hash's 'scan') that the first
// call sets with the stems lasts drainScanFor after the drain's last call
// through asynq's sets and pending list (each moves it on): the tenant
// stays listed in P..'draining' until its scans end, and the heartbeat
// removes the mark and P..'drs:'..tenant once it lapsed (their caller went
// away).
//
// The first call records what it discarded (P..'drf:'..tenant..':'..token):
// go-redis sends a script again after a read timeout or a dropped
// connection, and a first call that finds the record is that call sent
// again after it ran. It sets nothing aside again (the backlog holds only
// tasks enqueued since, which stay) and answers the first run's counts
// with its own, as the caller got no other reply.
//
// It returns {waiting, admitted, parked, remaining, admit()'s list}: what
// it discarded, what is left in the lists it works through, and what the
// room it made admitted (other tenants' tasks, or the tenant's own after
// its last step).
var drainScript = redis.NewScript(prelude + drainPrelude + ownedPrelude(15) + discardParkedLua + scanForLua + `
local t, limit, tok = ARGV[10], tonumber(ARGV[11]), ARGV[13]
local b = P .. 'b:' .. t
local drains = P .. 'dr:' .. t
local admitted, parked = 0, 0
-- The first call's record: what it discarded. Found at a first call, it is
-- the same call sent again (go-redis sends a command again after a read
-- timeout or a dropped connection): the backlog is not set aside again
-- (that would take tasks enqueued since in place of the rest of the first
-- run's list), and the reply counts the first run's work, whose reply the
-- caller never got.
local firstKey = P .. 'drf:' .. t .. ':' .. tok
local again = ARGV[12] == '1' and redis.call('GET', firstKey)
if ARGV[12] == '1' and not again then
  if #stems > 0 then
    local ran = P .. 'drr:' .. t .. ':' .. tok
    for _, id in ipairs(redis.call('LRANGE', A .. 'active', 0, -1)) do
      if owned(id) then redis.call('SADD', ran, id) end
    end
    redis.call('PEXPIRE', ran, 3600000)
    -- Tasks admitted from now until the drain has gone through asynq's
    -- sets and pending list did not wait when it began either: admission
    -- and the gate add them to ran (scanning), until Dispatcher.Drain
    -- ends the scans (drainScansEndScript).
    redis.call('SADD', P .. 'drs:' .. t, tok)
    redis.call('PEXPIRE', P .. 'drs:' .. t, 3600000)
    if num(redis.call('HGET', tkey(t), 'scan'), 0) < NOW + SCAN_FOR then
      redis.call('HSET', tkey(t), 'scan', NOW + SCAN_FOR)
    end
  end
  if redis.call('EXISTS', b) == 1 then redis.call('RENAME', b, drainList(t, tok)) end
  redis.call('ZADD', drains, redis.call('INCR', P .. 'drseq'), tok)
  for _, id in ipairs(redis.call('SMEMBERS', P .. 'run:' .. t)) do
    local key = A .. 't:' .. id
    if redis.call('HGET', key, 'state') == 'pending' then
      redis.call('LREM', A .. 'pending', 1, id)
      redis.call('DEL', key)
      local ft, _, est, _, w = finish(id)
      if ft then charge(ft, -est / w) end -- it never runs
      admitted = admitted + 1
    end
  end
  for _, hk in ipairs({ keptKey(t), parkedKey(t) }) do
    local recs = redis.call('HGETALL', hk)
    for i = 1, #recs, 2 do
      parked = parked + discardParked(recs[i], recs[i + 1], tonumber(ARGV[14]))
    end
  end
  redis.call('DEL', keptKey(t), parkedKey(t))
  redis.call('SREM', P .. 'keptt', t)
  redis.call('SREM', P .. 'parkedt', t)
elseif redis.call('SISMEMBER', P .. 'drs:' .. t, tok) == 1 and num(redis.call('HGET', tkey(t), 'scan'), 0) < NOW + SCAN_FOR then
  -- Its scans come after its steps: its scan mark lasts SCAN_FOR past
  -- each of its calls.
  redis.call('HSET', tkey(t), 'scan', NOW + SCAN_FOR)
end
-- This drain's list and those of the drains before it, oldest first (none
-- when this drain is over: a later one finished its work, or the
-- heartbeat put it back).
local lists = {}
local seq = redis.call('ZSCORE', drains, tok)
if seq then lists = redis.call('ZRANGEBYSCORE', drains, '-inf', seq) end
local ids, remaining = {}, 0
for _, other in ipairs(lists) do
  local l = drainList(t, other)
  if #ids < limit then
    local some = redis.call('LRANGE', l, 0, limit - #ids - 1)
    if #some > 0 then
      redis.call('LTRIM', l, #some, -1)
      for _, id in ipairs(some) do ids[#ids + 1] = id end
    end
  end
  local n = redis.call('LLEN', l)
  if n == 0 and other ~= tok then redis.call('ZREM', drains, other) end
  remaining = remaining + n
end
if seq and remaining == 0 then redis.call('ZREM', drains, tok) end
if #ids > 0 then
  local taken = {}
  for i = 1, #ids, 1000 do
    local ws = redis.call('HMGET', P .. 'msg', unpack(ids, i, math.min(i + 999, #ids)))
    for _, w in ipairs(ws) do
      if w then
        local typ = fields(w, 1)[1]
        taken[typ] = (taken[typ] or 0) + 1
      end
    end
  end
  many('HDEL', P .. 'msg', ids)
  for typ, n in pairs(taken) do countWaiting(t, typ, -n) end
end
if redis.call('ZCARD', drains) == 0 then
  -- The last step (of every drain of t): admission may take the tenant's
  -- tasks again.
  redis.call('HDEL', tkey(t), 'drain')
  if num(redis.call('HGET', tkey(t), 'scan'), 0) > NOW then
    -- Its scans of asynq's sets go on: listed, the heartbeat ends them
    -- should their caller go away (see heartbeatScript).
    redis.call('SADD', P .. 'draining', t)
  else
    redis.call('SREM', P .. 'draining', t)
  end
  if redis.call('LLEN', b) == 0 then
    -- Nothing waits: what the counters still say is drift.
    for _, f in ipairs(redis.call('HKEYS', tkey(t))) do
      if string.sub(f, 1, 2) == 'n:' then redis.call('HDEL', tkey(t), f) end
    end
    redis.call('ZREM', P .. 'depth', t)
  end
else
  redis.call('HSET', tkey(t), 'drain', NOW + 60000)
  redis.call('SADD', P .. 'draining', t)
end
reconsider(t)
if ARGV[12] == '1' then
  if again then
    local f = fields(again, 2)
    return { #ids + num(f[1], 0), admitted + num(f[2], 0), parked + num(f[3], 0), remaining, admit() }
  end
  redis.call('SET', firstKey, #ids .. SEP .. admitted .. SEP .. parked, 'PX', 3600000)
end
return { #ids, admitted, parked, remaining, admit() }
`)

// statsScript reports one tenant's state in this queue:
//
//	{waiting, admitted, running, parked, oldest enqueued ms (0: none), hold reasons,
//	 weight (0: no policy recorded), max running, max waiting, {type, count, ...}, now ms}
//
//	ARGV[10] tenant.
var statsScript = redis.NewScript(prelude + `
local t = ARGV[10]
local waiting = redis.call('LLEN', P .. 'b:' .. t) + setAside(t)
-- The oldest is at the front of the backlog, or of a list a drain set
-- aside (those waited before it).
local oldest = 0
local fronts = { P .. 'b:' .. t }
for _, tok in ipairs(redis.call('ZRANGE', P .. 'dr:' .. t, 0, -1)) do
  fronts[#fronts + 1] = P .. 'dr:' .. t .. ':' .. tok
end
for _, l in ipairs(fronts) do
  local head = redis.call('LINDEX', l, 0)
  local w = head and redis.call('HGET', P .. 'msg', head)
  local at = w and num(fields(w, 3)[3], 0) or 0
  if at > 0 and (oldest == 0 or at < oldest) then oldest = at end
end
local admitted, running = 0, 0
for _, id in ipairs(redis.call('SMEMBERS', P .. 'run:' .. t)) do
  admitted = admitted + 1
  if redis.call('HGET', A .. 't:' .. id, 'state') == 'active' then running = running + 1 end
end
local types = {}
local all = redis.call('HGETALL', tkey(t))
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'n:' and num(all[i + 1], 0) > 0 then
    types[#types + 1] = string.sub(all[i], 3)
    types[#types + 1] = all[i + 1]
  end
end
local h = redis.call('HGET', P .. 'hold', t) or ''
local tk = tkey(t)
return { waiting, admitted, running, redis.call('HLEN', keptKey(t)) + redis.call('HLEN', parkedKey(t)), fmt(oldest), h,
  redis.call('HGET', tk, 'w') or '0', redis.call('HGET', tk, 'mr') or '0', redis.call('HGET', tk, 'mw') or '0', types, fmt(NOW) }
`)

// forgetScript removes what the dispatcher keeps of a tenant in this queue
// once it is erased: its state, backlog (also what a drain set aside and
// has not discarded), admitted and parked sets, hold reasons (also those
// released while the queue's holds marker was gone: P..'unheld') and cost
// estimates. Like drainScript it removes at most ARGV[11] waiting tasks
// per call; it returns 0 while some remain (call again), 1 once
// everything is gone.
//
//	ARGV[10] tenant, ARGV[11] most waiting tasks to remove.
var forgetScript = redis.NewScript(prelude + `
local t = ARGV[10]
for _, tok in ipairs(redis.call('ZRANGE', P .. 'dr:' .. t, 0, -1)) do
  local l = P .. 'dr:' .. t .. ':' .. tok
  local ids = redis.call('LRANGE', l, 0, tonumber(ARGV[11]) - 1)
  if #ids > 0 then
    many('HDEL', P .. 'msg', ids)
    redis.call('LTRIM', l, #ids, -1)
    return 0
  end
  redis.call('ZREM', P .. 'dr:' .. t, tok)
end
redis.call('SREM', P .. 'draining', t)
local b = P .. 'b:' .. t
local ids = redis.call('LRANGE', b, 0, tonumber(ARGV[11]) - 1)
if #ids > 0 then
  many('HDEL', P .. 'msg', ids)
  redis.call('LTRIM', b, #ids, -1)
end
if redis.call('LLEN', b) > 0 then return 0 end
for _, id in ipairs(redis.call('SMEMBERS', P .. 'run:' .. t)) do finish(id) end
redis.call('DEL', tkey(t), b, P .. 'run:' .. t, keptKey(t), parkedKey(t), P .. 'drs:' .. t, P .. 'pp:' .. t)
redis.call('SREM', P .. 'keptt', t)
redis.call('SREM', P .. 'parkedt', t)
redis.call('HDEL', P .. 'hold', t)
redis.call('HDEL', P .. 'unheld', t)
redis.call('ZREM', P .. 'ready', t)
redis.call('ZREM', P .. 'depth', t)
redis.call('ZREM', P .. 'lost', t)
return 1
`)

// discardParkedLua defines discardParked(id, rec, ttl) for drainScript
// and drainScansEndScript: it discards task id, parked by its tenant with
// the record rec, and returns 1, or 0 when there is nothing of it to
// discard. Parked tasks are in asynq's retry set, or pending again when
// their hour there ran out during the hold (asynq's forwarder): either way
// they have not started, and left in asynq they would run. Or the task is
// kept with its message (parkRecord), asynq done with it or letting it go
// (its worker is handing it back: marked in P..'drained' for ttl ms), or
// its recoverer archived the attempt of a worker killed before the
// hand-back (releaseParked would release it: it is waiting, not failed).
// The caller drops the record.
const discardParkedLua = `
local function discardParked(id, rec, ttl)
  local key = A .. 't:' .. id
  local st = redis.call('HGET', key, 'state')
  if st == 'retry' or st == 'pending' then
    unqueue(id, st)
    return 1
  end
  if (not st or st == 'active' or (st == 'archived' and redis.call('HEXISTS', P .. 'msg', id) == 0
      and redis.call('HEXISTS', P .. 'adm', id) == 0)) and fields(rec, 2)[3] then
    if st == 'active' then
      redis.call('ZADD', P .. 'drained', NOW + ttl, id)
    elseif st == 'archived' then
      redis.call('ZREM', A .. 'archived', id)
      redis.call('DEL', key)
    end
    return 1
  end
  return 0
end
`

// drainScansEndScript ends a drain's pass through asynq's sets and pending
// list (Dispatcher.Drain). First it discards what was parked while the
// pass ran (the first call of drainScript discarded what was parked
// before): a task that waited in asynq's retry or scheduled set when the
// drain began, which asynq's forwarder moved into the pending list and a
// worker took before the scan got there, is parked by the gate while the
// tenant is held, being drained or at its running cap, not run. The
// dispatcher keeps it, in none of the places the scans look, and would
// put it back into the backlog once the tenant is released or has room:
// until this end, releaseParked leaves it parked (scansDiscard). A
// parked task of the drain's set of the tasks to leave (running when it
// began, or admitted since) stays. Then its set of the tasks to leave
// (P..'drr:'..tenant..':'..token) goes, and admission stops adding to it
// (P..'drs:'..tenant, and the t: hash's 'scan' once no drain of the
// tenant scans).
//
//	ARGV[10] tenant, ARGV[11] the drain's token, ARGV[12] how long a
//	discarded task's mark in P..'drained' lasts (ms, as drainScript's).
//
// It returns how many parked tasks it discarded.
var drainScansEndScript = redis.NewScript(prelude + discardParkedLua + `
local t, tok = ARGV[10], ARGV[11]
local ran = P .. 'drr:' .. t .. ':' .. tok
local parked = 0
for _, h in ipairs({ { keptKey(t), P .. 'keptt' }, { parkedKey(t), P .. 'parkedt' } }) do
  local hk = h[1]
  local recs = redis.call('HGETALL', hk)
  for i = 1, #recs, 2 do
    local id = recs[i]
    if redis.call('SISMEMBER', ran, id) == 0 then
      parked = parked + discardParked(id, recs[i + 1], tonumber(ARGV[12]))
      redis.call('HDEL', hk, id)
      redis.call('ZREM', P .. 'hb', id)
    end
  end
  if redis.call('EXISTS', hk) == 0 then redis.call('SREM', h[2], t) end
end
redis.call('DEL', ran)
redis.call('SREM', P .. 'drs:' .. t, tok)
if redis.call('EXISTS', P .. 'drs:' .. t) == 0 then
  redis.call('HDEL', tkey(t), 'scan')
  if not draining(t) and redis.call('EXISTS', P .. 'dr:' .. t) == 0 then redis.call('SREM', P .. 'draining', t) end
end
return parked
`)

// ownedPrelude defines owned(id) for drainScript, unscheduleScript and
// unpendScript: whether task id is the drained tenant's, that is one of
// the stems in ARGV[from..] or starts with one and ':'.
func ownedPrelude(from int) string {
	return `
local stems = {}
for i = ` + strconv.Itoa(from) + `, #ARGV do stems[#stems + 1] = ARGV[i] end
local function owned(id)
  for _, s in ipairs(stems) do
    if id == s or (string.sub(id, 1, #s + 1) == s .. ':') then return true end
  end
  return false
end
`
}

// scanForLua defines SCAN_FOR: how long (ms) after the last call of a
// drain going through asynq's sets and pending list its scan mark lasts
// (drainScanFor).
var scanForLua = "\nlocal SCAN_FOR = " + strconv.FormatInt(drainScanFor.Milliseconds(), 10) + "\n"

// scanPrelude is what unscheduleScript and unpendScript add to
// ownedPrelude: ranAtStart(id), whether asynq held task id as active when
// the drain began (ARGV[4], the drain's P..'drr:' key under P, empty for
// none): such a task's retry is not one that waited, and stays; and
// dropParked(id), which drops the parked record the tenant (ARGV[5]) may
// have of a task the scan deletes (parked while the drain ran, then put
// back into asynq's lists by a shutdown or its lost lease): released, it
// would bring the discarded task back (see drainScansEndScript).
var scanPrelude = scanForLua + `
-- scanOn marks that the drain (its token ARGV[6]) still goes through
-- asynq's sets and pending list: the tenant's scan mark (the t: hash's
-- 'scan') moves on to SCAN_FOR from now (ARGV[7], Unix ms; empty: Redis's
-- TIME), and the drain is listed among the tenant's scanning drains
-- (P..'drs:'..tenant, and P..'draining' for the heartbeat), again should
-- a heartbeat have taken it for gone (its calls stopped for SCAN_FOR).
local function scanOn()
  local P, t = KEYS[1], ARGV[5]
  local now = tonumber(ARGV[7] or '')
  if not now then
    local tm = redis.call('TIME')
    now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
  end
  local tk = P .. 't:' .. t
  if (tonumber(redis.call('HGET', tk, 'scan') or '') or 0) < now + SCAN_FOR then
    redis.call('HSET', tk, 'scan', now + SCAN_FOR)
  end
  redis.call('SADD', P .. 'drs:' .. t, ARGV[6])
  redis.call('PEXPIRE', P .. 'drs:' .. t, 3600000)
  redis.call('SADD', P .. 'draining', t)
end
local function ranAtStart(id)
  return ARGV[4] ~= '' and redis.call('SISMEMBER', KEYS[1] .. ARGV[4], id) == 1
end
local function dropParked(id)
  redis.call('HDEL', KEYS[1] .. 'kept:' .. ARGV[5], id)
  redis.call('HDEL', KEYS[1] .. 'parked:' .. ARGV[5], id)
end
`

// unscheduleScript is one step of a drain through asynq's retry or
// scheduled set of this queue (Dispatcher.unschedule): it looks at up to
// ARGV[3] members from ZSCAN cursor ARGV[2] and deletes those of the
// drained tenant, its tasks that wait there for their next attempt or
// their time. asynq keeps nothing of such a task but its hash and its
// member of the set, and a unique lock if it was enqueued with one:
// all go in this call, so a task is deleted whole or not at all. A
// task's tenant is known by its id: a stem of ARGV[6..] (the id, or the
// id's start followed by ':'). The scan is O(size of the set) over all
// the calls, whoever's tasks it holds. A member that stays in the set
// from the first call to the last is seen (ZSCAN's guarantee); one added
// meanwhile may be seen or not, which is why it leaves the tasks asynq
// held as active when the drain began (ranAtStart): a retry of theirs is
// kept whenever their attempt fails. A member that leaves the set
// meanwhile went to the pending list (asynq's forwarder), which the drain
// scans after both sets (Dispatcher.Drain).
//
//	ARGV[1] 'retry' or 'scheduled' (the set, and the state asynq records
//	for its tasks), ARGV[2] the cursor, ARGV[3] the members per call,
//	ARGV[4] the drain's set of the tasks running when it began (see
//	scanPrelude), ARGV[5] the tenant, ARGV[6] the drain's token, ARGV[7]
//	now (Unix ms; empty: Redis's TIME), ARGV[8..] its task id stems. Each
//	call moves the drain's scan mark on (scanOn).
//
// It returns {next cursor ('0': done), tasks deleted}.
var unscheduleScript = redis.NewScript(ownedPrelude(8) + scanPrelude + `
scanOn()
local A, set = KEYS[2], ARGV[1]
local zset = A .. set
local res = redis.call('ZSCAN', zset, ARGV[2], 'COUNT', tonumber(ARGV[3]))
local members, n = res[2], 0
for i = 1, #members, 2 do
  local id = members[i]
  if owned(id) and not ranAtStart(id) then
    local key = A .. 't:' .. id
    local f = redis.call('HMGET', key, 'state', 'unique_key')
    if f[1] == set then
      -- asynq's own DeleteTask frees the unique lock the same way: only
      -- while it is this task's.
      if f[2] and f[2] ~= '' and redis.call('GET', f[2]) == id then redis.call('DEL', f[2]) end
      redis.call('ZREM', zset, id)
      redis.call('DEL', key)
      dropParked(id)
      n = n + 1
    end
  end
end
return { res[1], n }
`)

// unpendScript is one step of a drain through asynq's pending list of
// this queue (Dispatcher.unpend): it looks at up to ARGV[3] tasks from
// index ARGV[2] (from the list's head, where admission pushes) and
// deletes those of the drained tenant that no admission put there: a
// retry asynq's forwarder moved from its retry set when it came due,
// which a worker would take past admission (the gate lets it run while
// the tenant's running cap has room). Admitted tasks are not touched
// (drainScript discards those that waited when the drain began; others
// were enqueued after it), nor the tasks asynq held as active when the
// drain began (ranAtStart: a retry of theirs stays). The drain scans the
// list after asynq's retry and scheduled sets, so a task that waited in
// either when it began and that asynq's forwarder moved here is looked
// at: tasks pushed at the head between calls shift the list (tasks
// already seen are looked at again), and a task deleted by another script
// before the index may make the scan skip one.
//
//	ARGV[1] unused, ARGV[2] the index, ARGV[3] the tasks per call,
//	ARGV[4] the drain's set of the tasks running when it began, ARGV[5]
//	the tenant, ARGV[6] the drain's token, ARGV[7] now, ARGV[8..] its task
//	id stems (see unscheduleScript).
//
// It returns {next index, tasks deleted, 1 when the list's end was reached}.
var unpendScript = redis.NewScript(ownedPrelude(8) + scanPrelude + `
scanOn()
local P, A = KEYS[1], KEYS[2]
local l = A .. 'pending'
local from, count = tonumber(ARGV[2]), tonumber(ARGV[3])
local ids = redis.call('LRANGE', l, from, from + count - 1)
local n = 0
for _, id in ipairs(ids) do
  if owned(id) and not ranAtStart(id) and redis.call('HEXISTS', P .. 'adm', id) == 0 then
    local key = A .. 't:' .. id
    local f = redis.call('HMGET', key, 'state', 'unique_key')
    if f[1] == 'pending' then
      if f[2] and f[2] ~= '' and redis.call('GET', f[2]) == id then redis.call('DEL', f[2]) end
      redis.call('LREM', l, 1, id)
      redis.call('DEL', key)
      dropParked(id)
      n = n + 1
    end
  end
end
local done = 0
if #ids < count then done = 1 end
return { from + #ids - n, n, done }
`)
