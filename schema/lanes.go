package schema

import (
	"context"
	"fmt"
	"hash/fnv"
	"runtime"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Lanes splits one database's connections into lanes, small pools of
// NewPool's kind, and sends each tenant's units of work to the same lanes,
// so that a server connection serves a few tenants over and over instead
// of every tenant in turn.
//
// Why: a PostgreSQL backend builds cache entries for every table, index
// and foreign key it touches (relation cache, catalog cache, the plans of
// foreign-key checks) and keeps them for its lifetime, and it plans a
// prepared statement again when search_path differs from the last run. With
// one schema per tenant, a pool whose connections serve every tenant makes
// each backend build every tenant's entries, on its own, and keep them all:
// CPU on each first touch (about a millisecond per tenant and connection for
// the invoice load and document record) and memory that grows with the
// fleet (about 100 KB per tenant and backend for the same statements).
// With lanes, each backend sees about 2/N of the tenants.
//
// A tenant has two lanes, both picked by a hash of its schema name: it uses
// the first unless all of that lane's connections are taken, then the
// second, then whichever lane has the most free connections. So a busy
// tenant still gets every connection (affinity gives way to load; it never
// makes a unit wait while another lane has a free connection), and when
// every lane is full the unit waits on its first lane, as it would on a
// single pool. The caps add up to the configured total.
//
// Lanes is safe for concurrent use. Each lane keeps NewPool's guarantees
// (empty search_path, connections verified clean on release).
type Lanes struct {
	pools []*pgxpool.Pool
	caps  []int32
	// chose counts For's answers by LaneChoice.
	chose [laneChoices]atomic.Uint64
}

// LaneChoice is which of a tenant's lanes For gave it.
type LaneChoice int

const (
	// LaneFirst: the tenant's first lane, which had a free connection.
	LaneFirst LaneChoice = iota
	// LaneSecond: its second lane; the first had none free.
	LaneSecond
	// LaneOther: neither of its lanes had a free connection; another did.
	LaneOther
	// LaneFull: no lane had a free connection; the unit waits on its first.
	LaneFull
	laneChoices
)

// String is the choice's name in metrics: first, second, other, full.
func (c LaneChoice) String() string {
	switch c {
	case LaneFirst:
		return "first"
	case LaneSecond:
		return "second"
	case LaneOther:
		return "other"
	case LaneFull:
		return "full"
	}
	return "unknown"
}

// NewLanes opens n lanes on databaseURL that together hold at most
// opts.MaxConns connections (0: pgx's default, max(4, NumCPU), or the URL's
// pool_max_conns). The caps differ by at most one; n is lowered to the
// total when the total is smaller, so no lane is empty. n <= 1 gives one
// lane: a single pool, with no affinity. opts.MinConns, split over the
// lanes the same way, is how many connections they keep open; 0 connects
// lazily, as NewPool does.
func NewLanes(ctx context.Context, databaseURL string, n int, opts PoolOptions) (*Lanes, error) {
	if n < 0 {
		return nil, fmt.Errorf("new lanes: %d lanes is negative", n)
	}
	if opts.MaxConns < 0 {
		return nil, fmt.Errorf("new lanes: MaxConns %d is negative", opts.MaxConns)
	}
	total := opts.MaxConns
	if total == 0 {
		cfg, err := ParseConfig(databaseURL)
		if err != nil {
			return nil, err
		}
		total = cfg.MaxConns // pgx's default, or pool_max_conns
		if total <= 0 {
			total = int32(max(4, runtime.NumCPU()))
		}
	}
	n = max(1, min(n, int(total)))
	l := &Lanes{}
	for i := range n {
		c := share(total, n, i)
		o := opts
		o.MaxConns = c
		o.MinConns = share(min(opts.MinConns, total), n, i)
		p, err := NewPool(ctx, databaseURL, o)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("lane %d of %d: %w", i+1, n, err)
		}
		l.pools, l.caps = append(l.pools, p), append(l.caps, c)
	}
	return l, nil
}

// share is lane i's part of total split over n lanes as NewLanes splits
// the connections: the parts differ by at most one, the larger first.
func share(total int32, n, i int) int32 {
	c := total / int32(n)
	if int32(i) < total%int32(n) {
		c++
	}
	return c
}

// For returns the lane for the tenant whose schema is schemaName: its
// first lane unless all of that lane's connections are taken, then its
// second, then the lane with the most free connections; with none free,
// its first lane (Acquire then waits there).
func (l *Lanes) For(schemaName string) *pgxpool.Pool {
	p, c := l.choose(schemaName)
	l.chose[c].Add(1)
	return p
}

// choose is For without the count.
func (l *Lanes) choose(schemaName string) (*pgxpool.Pool, LaneChoice) {
	n := len(l.pools)
	if n == 1 {
		if l.free(0) > 0 {
			return l.pools[0], LaneFirst
		}
		return l.pools[0], LaneFull
	}
	h := fnv.New64a()
	h.Write([]byte(schemaName))
	sum := h.Sum64()
	first := int(sum % uint64(n))
	if l.free(first) > 0 {
		return l.pools[first], LaneFirst
	}
	second := (first + 1 + int((sum>>32)%uint64(n-1))) % n
	if l.free(second) > 0 {
		return l.pools[second], LaneSecond
	}
	if i, f := l.mostFree(); f > 0 {
		return l.pools[i], LaneOther
	}
	return l.pools[first], LaneFull
}

// Chosen returns how many times For gave a tenant the lane of choice c.
// A rising share of LaneOther and LaneFull says the lanes are too busy to
// keep tenants on their backends (or the pool is too small).
func (l *Lanes) Chosen(c LaneChoice) uint64 {
	if c < 0 || c >= laneChoices {
		return 0
	}
	return l.chose[c].Load()
}

// Any returns the lane with the most free connections (ties: the first),
// for work that belongs to no tenant.
func (l *Lanes) Any() *pgxpool.Pool {
	i, _ := l.mostFree()
	return l.pools[i]
}

// Pools returns the lanes, in order. The slice must not be modified.
func (l *Lanes) Pools() []*pgxpool.Pool { return l.pools }

// Close closes every lane.
func (l *Lanes) Close() {
	for _, p := range l.pools {
		p.Close()
	}
}

// free is the number of lane i's connections neither acquired nor being
// opened for an Acquire now (open idle ones and ones it may still open).
// A connection being opened is already promised to a unit: counting it as
// free would send a burst of one tenant's units, while the lane's
// connections are still being opened (at start-up, after an idle spell),
// all onto its first lane, to wait there while other lanes sit idle.
func (l *Lanes) free(i int) int32 {
	st := l.pools[i].Stat()
	return l.caps[i] - st.AcquiredConns() - st.ConstructingConns()
}

// mostFree returns the lane with the most free connections and that number.
func (l *Lanes) mostFree() (int, int32) {
	best, bestFree := 0, l.free(0)
	for i := 1; i < len(l.pools); i++ {
		if f := l.free(i); f > bestFree {
			best, bestFree = i, f
		}
	}
	return best, bestFree
}

// MaxConns is the lanes' total connection cap.
func (l *Lanes) MaxConns() int32 {
	var n int32
	for _, c := range l.caps {
		n += c
	}
	return n
}
