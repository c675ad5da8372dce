package tasks

import (
	"fmt"
	"hash/fnv"
	"slices"
)

// MaxQueueShards bounds the shards of a queue class (QUEUE_SHARDS).
const MaxQueueShards = 16

// shardNames are the queues of each class, shard by shard: shard 0 keeps the
// class's plain name, so one shard is exactly the queue set of old. The
// other names were picked for their Redis Cluster hash slots (asynq tags
// every key of a queue "asynq:{name}:..."): in a 3-master cluster made by
// `redis-cli --cluster create` (slots 0-5460, 5461-10922, 10923-16383),
// shard i of a class lives on the master after the one of shard i-1, so
// any number of shards spreads a class as evenly as it can over the three
// masters (TestShardNamesSpreadOverMasters checks it). The numeric suffix
// is part of the name, not the shard's index. These are stable wire names,
// like task type names: tasks in Redis live in them, so never change or
// reorder them.
var shardNames = map[string][MaxQueueShards]string{
	QueueCritical: {"critical", "critical_2", "critical_4", "critical_5", "critical_6", "critical_8", "critical_9", "critical_12",
		"critical_14", "critical_15", "critical_16", "critical_18", "critical_19", "critical_22", "critical_25", "critical_27"},
	QueueDefault: {"default", "default_1", "default_2", "default_3", "default_4", "default_6", "default_7", "default_8",
		"default_10", "default_12", "default_13", "default_14", "default_16", "default_17", "default_18", "default_23"},
	QueueLow: {"low", "low_2", "low_3", "low_5", "low_6", "low_7", "low_8", "low_10",
		"low_11", "low_13", "low_14", "low_15", "low_17", "low_18", "low_19", "low_22"},
}

// ShardQueue returns the name of shard i (0 <= i < MaxQueueShards) of the
// queue class. Shard 0 is the class's own name. It panics on an unknown
// class or shard: a programming error.
func ShardQueue(class string, i int) string {
	names, ok := shardNames[class]
	if !ok || i < 0 || i >= MaxQueueShards {
		panic(fmt.Sprintf("tasks: no shard %d of queue class %q", i, class))
	}
	return names[i]
}

// ClassOf returns the class of a queue name (QueueCritical, QueueDefault or
// QueueLow) and whether the name is a shard of one.
func ClassOf(queue string) (string, bool) {
	for class, names := range shardNames {
		if slices.Contains(names[:], queue) {
			return class, true
		}
	}
	return "", false
}

// Layout is how the queue classes (QueueCritical, QueueDefault, QueueLow,
// which a payload's Spec names) map to asynq queues. With N shards each
// class has N queues (ShardQueue), and the tasks of one tenant and class
// always go to the same one, chosen by a stable hash of the tenant id:
// dedupe by task id and the fair dispatcher's per-tenant backlog, both per
// queue, rely on it. Tasks without a tenant go to shard 0.
//
// A Layout has two counts. Shards is how many queues per class new tasks
// go to (QUEUE_SHARDS). Served (QUEUE_SHARDS_SERVED, at least Shards) is
// how many per class workers serve and task look-ups and tenant
// operations (drain, stats) cover, so that tasks enqueued under an older,
// different count are still found and run while the count changes. A
// tenant's holds go further: HoldQueues.
//
// The zero Layout has one shard: the classes are the queues. Build others
// with NewLayout. Layout is a small value, safe to copy and share.
type Layout struct {
	shards, served int
}

// NewLayout returns the layout with shards queues per class for new tasks
// and served (0 means shards) queues per class served and searched. Both
// must be between 1 and MaxQueueShards, and served at least shards.
func NewLayout(shards, served int) (Layout, error) {
	if served == 0 {
		served = shards
	}
	if shards < 1 || shards > MaxQueueShards {
		return Layout{}, fmt.Errorf("queue shards: must be between 1 and %d, got %d", MaxQueueShards, shards)
	}
	if served < shards || served > MaxQueueShards {
		return Layout{}, fmt.Errorf("served queue shards: must be between the shard count %d and %d, got %d", shards, MaxQueueShards, served)
	}
	return Layout{shards: shards, served: served}, nil
}

// Shards returns how many queues per class new tasks go to.
func (l Layout) Shards() int { return max(l.shards, 1) }

// Served returns how many queues per class are served and searched.
func (l Layout) Served() int { return max(l.served, l.Shards()) }

// String describes l for logs: "3" or "3 (serving 4)".
func (l Layout) String() string {
	if l.Served() == l.Shards() {
		return fmt.Sprint(l.Shards())
	}
	return fmt.Sprintf("%d (serving %d)", l.Shards(), l.Served())
}

// Queue returns the queue of a task of class for tenantID: the tenant's
// shard of the class, or shard 0 for a task without a tenant (""). A class
// that is not a known one is returned as it is.
func (l Layout) Queue(class, tenantID string) string {
	if _, ok := shardNames[class]; !ok {
		return class
	}
	return ShardQueue(class, ShardOf(tenantID, l.Shards()))
}

// Queues returns every served queue, class by class in priority order
// (critical, default, low), shard 0 first within a class.
func (l Layout) Queues() []string { return l.queuesOf(Queues) }

// WorkQueues returns the served queues of ordinary work (the classes of
// WorkQueues): where a suspended tenant's backlog is held.
func (l Layout) WorkQueues() []string { return l.queuesOf(WorkQueues) }

func (l Layout) queuesOf(classes []string) []string {
	out := make([]string, 0, len(classes)*l.Served())
	for _, c := range classes {
		for i := range l.Served() {
			out = append(out, ShardQueue(c, i))
		}
	}
	return out
}

// ClassQueues returns the served queues of the given queue classes, class
// by class in the order given, shard 0 first within a class: the queues of
// a worker that serves only those classes. A name that is not a queue
// class is left out.
func (l Layout) ClassQueues(classes []string) []string {
	return l.queuesOf(slices.DeleteFunc(slices.Clone(classes), func(c string) bool { return !slices.Contains(Queues, c) }))
}

// Weights returns the asynq server's queue priorities: every served shard
// of a class with the class's weight (QueueWeights), so the classes keep
// their 6/3/1 proportion whatever the shard count. The map is new on
// every call.
func (l Layout) Weights() map[string]int { return l.ClassWeights(Queues) }

// ClassWeights is Weights for a worker that serves only the given queue
// classes (names that are not queue classes are left out).
func (l Layout) ClassWeights(classes []string) map[string]int {
	out := make(map[string]int, len(classes)*l.Served())
	for _, c := range classes {
		w, ok := QueueWeights[c]
		if !ok {
			continue
		}
		for i := range l.Served() {
			out[ShardQueue(c, i)] = w
		}
	}
	return out
}

// TenantQueues returns the queues the tasks of tenantID can be in: in each
// class, its shard under the current count first, then its shards under
// every other count up to Served (tasks enqueued before the count
// changed). "" (system tasks) gives the shard 0 queues.
func (l Layout) TenantQueues(tenantID string) []string {
	var out []string
	for _, c := range Queues {
		out = append(out, l.Queue(c, tenantID))
		for n := 1; n <= l.Served(); n++ {
			if q := ShardQueue(c, ShardOf(tenantID, n)); !slices.Contains(out, q) {
				out = append(out, q)
			}
		}
	}
	return out
}

// HoldQueues returns the served queues of the given classes (ClassQueues)
// and, after them, every other queue of those classes that the tasks of
// tenantID can be in under any shard count up to MaxQueueShards, whatever
// other processes' QUEUE_SHARDS and QUEUE_SHARDS_SERVED (ShardOf moves a
// tenant only to the new shard as the count grows: a few per class). A
// tenant's holds and their releases go to all of them: made through a
// process that serves fewer shards than others (while a larger
// QUEUE_SHARDS_SERVED is rolled out), they still cover the shard its tasks
// go to once QUEUE_SHARDS changes. The first is the first class's shard 0
// whatever the layout.
func (l Layout) HoldQueues(tenantID string, classes []string) []string {
	out := l.ClassQueues(classes)
	for _, c := range classes {
		if _, ok := shardNames[c]; !ok {
			continue
		}
		for n := 1; n <= MaxQueueShards; n++ {
			if q := ShardQueue(c, ShardOf(tenantID, n)); !slices.Contains(out, q) {
				out = append(out, q)
			}
		}
	}
	return out
}

// ShardOf returns the shard (0 <= shard < n) of tenantID among n: a jump
// consistent hash (Lamping and Veach, 2014) of the FNV-1a hash of the id.
// It is stable across processes and releases, spreads tenants evenly, and
// when n grows by one only about 1/(n+1) of the tenants move (all of them
// to the new shard). "" and n <= 1 give 0. Never change it: tasks in Redis
// are where it put them.
func ShardOf(tenantID string, n int) int {
	if tenantID == "" || n <= 1 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(tenantID))
	key := h.Sum64()
	var b, j int64 = -1, 0
	for j < int64(n) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}
