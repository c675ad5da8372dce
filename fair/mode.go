package fair

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Mode is how the processes sharing a Redis put tenants' tasks into
// asynq's queues. All of them must use the same one: an enqueue service
// without fair dispatch puts tasks where a fair worker finds them only at
// its idle recheck (and none of them counts against a tenant's caps), and
// a worker without it runs admitted tasks without reporting them, so their
// tenants' slots are freed only when the leases run out, and only the next
// enqueue admits more of the tasks waiting in the backlogs.
type Mode string

const (
	// ModeFair admits tenants' tasks through their backlogs
	// (FAIR_DISPATCH=true).
	ModeFair Mode = "fair"
	// ModePlain enqueues them straight into asynq's queues
	// (FAIR_DISPATCH=false).
	ModePlain Mode = "plain"
)

// ModeOf returns the Mode of a FAIR_DISPATCH setting.
func ModeOf(fairDispatch bool) Mode {
	if fairDispatch {
		return ModeFair
	}
	return ModePlain
}

// Setting is the FAIR_DISPATCH value of m.
func (m Mode) Setting() string {
	if m == ModeFair {
		return "FAIR_DISPATCH=true"
	}
	return "FAIR_DISPATCH=false"
}

// ParseMode parses "fair" or "plain".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.TrimSpace(s)); m {
	case ModeFair, ModePlain:
		return m, nil
	}
	return "", fmt.Errorf("fair: dispatch mode %q: want fair or plain", s)
}

// modeKey records the dispatch mode of the processes sharing a Redis: the
// first process to start records its own, and every later one checks
// against it (ClaimMode). Only SwitchMode changes it.
const modeKey = "fair:mode"

// ErrModeMismatch is returned by ClaimMode when Redis records another
// dispatch mode than the process's.
var ErrModeMismatch = errors.New("dispatch mode differs from the one its Redis records")

// ErrSwitchRefused is returned by SwitchMode when switching would strand
// tasks or leave a worker of the old mode running.
var ErrSwitchRefused = errors.New("dispatch mode switch refused")

// claimModeScript records ARGV[1] unless a mode is recorded, and returns
// the recorded mode.
var claimModeScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
`)

// ClaimMode records mode as the dispatch mode of rdb's processes unless
// one is recorded already, in one atomic step. It returns an error
// wrapping ErrModeMismatch, naming both modes, when the recorded mode is
// another: the process must not run with it (see Mode). A Redis flushed
// (or replaced) records nothing: the fair processes running then record
// ModeFair again when they find the loss (a Dispatcher with Config.Holds,
// as it puts the holds back), the workers and enqueue services without
// fair dispatch ModePlain within their interval (KeepMode), and otherwise
// the next process to start records its mode.
func ClaimMode(ctx context.Context, rdb redis.Scripter, mode Mode) error {
	if _, err := ParseMode(string(mode)); err != nil {
		return err
	}
	got, err := claimModeScript.Run(ctx, rdb, []string{modeKey}, string(mode)).Text()
	if err != nil {
		return fmt.Errorf("fair: record the dispatch mode: %w", err)
	}
	if Mode(got) != mode {
		return fmt.Errorf("%w: this process runs with %s (%s), and the processes sharing its Redis with %s (%s)",
			ErrModeMismatch, mode.Setting(), mode, Mode(got).Setting(), got)
	}
	return nil
}

// KeepMode records mode again (ClaimMode) every interval until ctx is
// done, for the processes that find no loss of Redis's data themselves:
// those without fair dispatch (ModePlain), which have no dispatcher to
// find its holds gone. A Redis that lost its data (restarted without
// persistence, flushed) lost the record, and a process with the other
// setting started afterwards would record its own mode beside the running
// ones, and make each of them refuse to start at its next restart. A
// mode recorded meanwhile by such a process is left and logged at error
// level (ErrModeMismatch), once until the record changes; a Redis that
// cannot be reached is logged at debug level only (the process's other
// lines say so).
//
// Each interval it also adds queues (a worker's served queues) to asynq's
// set of queues, as a fair worker's heartbeat does (Dispatcher.Serve):
// asynq's client adds a queue to it once per process, so a queue the
// dashboard deletes while it holds no task, or that Redis lost with its
// data, would otherwise stay unlisted by asynq's inspector, the dashboard
// and the queue metrics, while its tasks go through it, until the
// processes restart.
func KeepMode(ctx context.Context, rdb redis.Cmdable, mode Mode, interval time.Duration, logger *slog.Logger, queues ...string) {
	registered := make([]any, len(queues))
	for i, q := range queues {
		registered[i] = q
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var reported string // the mismatch last logged
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := ClaimMode(ctx, rdb, mode)
		switch {
		case err == nil:
			reported = ""
		case errors.Is(err, ErrModeMismatch):
			if err.Error() != reported {
				reported = err.Error()
				logger.ErrorContext(ctx, "dispatch mode recorded by another process after redis lost its data: stop the processes with the other FAIR_DISPATCH setting",
					slog.String("error", err.Error()))
			}
		case ctx.Err() == nil:
			logger.DebugContext(ctx, "record the dispatch mode again", slog.String("error", err.Error()))
		}
		if len(registered) > 0 {
			if err := rdb.SAdd(ctx, allQueuesKey, registered...).Err(); err != nil && ctx.Err() == nil {
				logger.DebugContext(ctx, "register the served queues again", slog.String("error", err.Error()))
			}
		}
	}
}

// RecordedMode returns the dispatch mode rdb records, "" when it records
// none (no process has started on it since it was last flushed).
func RecordedMode(ctx context.Context, rdb redis.Cmdable) (Mode, error) {
	got, err := rdb.Get(ctx, modeKey).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("fair: read the dispatch mode: %w", err)
	}
	return Mode(got), nil
}

// SwitchMode records to as the dispatch mode of the dispatcher's Redis
// and returns the mode recorded before ("" when none was). Every process
// must be stopped first and started again with to's setting: the others
// check the mode only when they start.
//
// Switching to ModePlain is refused (ErrSwitchRefused, with what is left
// in each of queues) while a queue still has a task waiting in a tenant's
// backlog, admitted to asynq and not reported finished, or parked for a
// held tenant, or a fair worker's heartbeat is current: nothing would ever
// admit, report or release those tasks. Let the workers finish the
// backlogs (or resume or drain held tenants), then stop them. Switching to
// ModeFair is always safe: fair workers run the tasks already in asynq's
// queues like any task that reaches them unannounced.
//
// Switching to ModePlain also drops what fair dispatch keeps of each
// tenant in queues (dropTenantState: policies, virtual times, measured
// costs, holds): processes without fair dispatch have no dispatcher to
// forget an erased tenant, so that state of a tenant erased during the
// plain interlude would stay in Redis for ever. A tenant's next enqueue
// after a switch back to fair brings its policy again.
//
// Switching to ModeFair from another mode also drops the holds of queues
// (suspensions, pauses, moves) and their marker: they are of the time
// before the plain interlude, in which tenants were suspended and resumed
// without them, and would hold a tenant resumed since, or leave out one
// suspended since. The first fair process to find the marker gone puts
// back the holds of the durable record as it is then (Config.Holds).
func (d *Dispatcher) SwitchMode(ctx context.Context, to Mode, queues ...string) (Mode, error) {
	if _, err := ParseMode(string(to)); err != nil {
		return "", err
	}
	from, err := RecordedMode(ctx, d.rdb)
	if err != nil {
		return "", err
	}
	if to == ModePlain {
		var left []string
		for _, q := range queues {
			o, err := d.Overview(ctx, q, 1)
			if err != nil {
				return from, err
			}
			p := keys(q)[0]
			parked, err := d.parkedTenants(ctx, p)
			if err != nil {
				return from, fmt.Errorf("fair: parked tasks of %s: %w", q, err)
			}
			if o.Waiting+o.Admitted+o.Workers+parked == 0 {
				continue
			}
			left = append(left, fmt.Sprintf("%s: %d waiting, %d admitted and not finished, %d tenants with parked tasks, %d live fair workers",
				q, o.Waiting, o.Admitted, parked, o.Workers))
		}
		if len(left) > 0 {
			return from, fmt.Errorf("%w: fair dispatch still holds work or runs (%s); let the workers finish the backlogs (resume or drain held tenants), stop every process, then switch",
				ErrSwitchRefused, strings.Join(left, "; "))
		}
		if err := d.dropTenantState(ctx, queues...); err != nil {
			return from, err
		}
	}
	if to == ModeFair && from != ModeFair {
		for _, q := range queues {
			p := keys(q)[0]
			if err := d.rdb.Del(ctx, p+"hold", p+"holds", p+"unheld").Err(); err != nil {
				return from, fmt.Errorf("fair: drop the holds of %s from before the switch: %w", q, err)
			}
		}
	}
	if err := d.rdb.Set(ctx, modeKey, string(to), 0).Err(); err != nil {
		return from, fmt.Errorf("fair: record the dispatch mode: %w", err)
	}
	return from, nil
}

// parkedTenants counts the tenants of the queue with key prefix p that
// have parked or kept tasks.
func (d *Dispatcher) parkedTenants(ctx context.Context, p string) (int, error) {
	tenants, err := d.rdb.SUnion(ctx, p+"keptt", p+"parkedt").Result()
	if err != nil {
		return 0, err
	}
	return len(tenants), nil
}

// tenantStateKinds are the per-tenant keys under a queue's prefix
// (scripts.go) that dropTenantState deletes: what is left of a tenant once
// nothing of it waits, is admitted or is parked (its policy, virtual time
// and measured costs). The keys that hold task ids (b:, run:, dr:) are
// left: after the switch's checks they exist only if a process still in
// fair mode enqueued meanwhile, and then they keep those tasks for a
// switch back to fair.
var tenantStateKinds = []string{"t:", "pp:"}

// dropTenantState deletes, in each of queues, every per-tenant key of the
// dispatcher (tenantStateKinds) and the queue's holds (hold, unheld, keyed
// by tenant; a switch back to fair takes them from the durable record),
// for a switch to plain dispatch whose checks found nothing waiting,
// admitted or parked there. The per-tenant keys are found by one SCAN of
// the dispatcher's keys, on each master of a cluster (a queue's keys are
// on the one holding its slot).
func (d *Dispatcher) dropTenantState(ctx context.Context, queues ...string) error {
	prefixes := make(map[string]bool, len(queues))
	for _, q := range queues {
		if err := checkQueue(q); err != nil {
			return err
		}
		prefixes[keys(q)[0]] = true
	}
	drop := func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			found, next, err := c.Scan(ctx, cursor, "fair:{*", 1000).Result()
			if err != nil {
				return err
			}
			// By queue: a queue's keys share its slot, so each DEL is one
			// command on a cluster too.
			del := map[string][]string{}
			for _, k := range found {
				end := strings.Index(k, "}:")
				if end < 0 || !prefixes[k[:end+2]] {
					continue
				}
				for _, kind := range tenantStateKinds {
					if strings.HasPrefix(k[end+2:], kind) {
						del[k[:end+2]] = append(del[k[:end+2]], k)
						break
					}
				}
			}
			for _, ks := range del {
				if err := c.Del(ctx, ks...).Err(); err != nil {
					return err
				}
			}
			if next == 0 {
				return nil
			}
			cursor = next
		}
	}
	var err error
	if cc, ok := d.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return drop(ctx, m) })
	} else {
		err = drop(ctx, d.rdb)
	}
	if err != nil {
		return fmt.Errorf("fair: drop the tenants' state: %w", err)
	}
	for p := range prefixes {
		if err := d.rdb.Del(ctx, p+"hold", p+"unheld").Err(); err != nil {
			return fmt.Errorf("fair: drop the tenants' state of %s: %w", strings.TrimSuffix(strings.TrimPrefix(p, "fair:{"), "}:"), err)
		}
	}
	return nil
}
