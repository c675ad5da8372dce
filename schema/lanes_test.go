package schema

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// openLanes opens lanes on url and closes them with the test.
func openLanes(t *testing.T, url string, n int, maxConns int32) *Lanes {
	t.Helper()
	l, err := NewLanes(context.Background(), url, n, PoolOptions{MaxConns: maxConns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func caps(l *Lanes) []int32 {
	var c []int32
	for _, p := range l.Pools() {
		c = append(c, p.Config().MaxConns)
	}
	return c
}

// TestNewLanesSplitsTheTotal: the lanes' caps add up to MaxConns and differ
// by at most one; more lanes than connections gives one connection per
// lane; 0 or 1 lane is a single pool; negative numbers are refused.
func TestNewLanesSplitsTheTotal(t *testing.T) {
	url := testenv.Postgres(t)
	for _, tc := range []struct {
		n     int
		total int32
		want  []int32
	}{
		{4, 10, []int32{3, 3, 2, 2}},
		{14, 14, slices.Repeat([]int32{1}, 14)},
		{8, 3, []int32{1, 1, 1}},
		{1, 5, []int32{5}},
		{0, 5, []int32{5}},
	} {
		l := openLanes(t, url, tc.n, tc.total)
		if got := caps(l); !slices.Equal(got, tc.want) {
			t.Errorf("NewLanes(%d lanes, %d conns): caps %v, want %v", tc.n, tc.total, got, tc.want)
		}
		if got := l.MaxConns(); got != tc.total {
			t.Errorf("NewLanes(%d lanes, %d conns): MaxConns %d", tc.n, tc.total, got)
		}
	}
	if _, err := NewLanes(context.Background(), url, -1, PoolOptions{}); err == nil {
		t.Error("NewLanes with -1 lanes: no error")
	}
	if _, err := NewLanes(context.Background(), url, 2, PoolOptions{MaxConns: -1}); err == nil {
		t.Error("NewLanes with MaxConns -1: no error")
	}
	if _, err := NewLanes(context.Background(), "postgres://%zz", 2, PoolOptions{}); err == nil {
		t.Error("NewLanes with a bad URL: no error")
	}
}

// TestLanesKeepMinConnsOpen: MinConns is split over the lanes as the caps
// are, and each lane opens its part in the background, without a unit of
// work asking, and opens it again when a connection closes; 0 opens
// nothing; a pool's MinConns above its MaxConns is its MaxConns, and a
// negative one is refused.
func TestLanesKeepMinConnsOpen(t *testing.T) {
	url := testenv.Postgres(t)
	open := func(l *Lanes) []int32 {
		var n []int32
		for _, p := range l.Pools() {
			n = append(n, p.Stat().TotalConns())
		}
		return n
	}
	waitOpen := func(l *Lanes, want []int32) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); !slices.Equal(open(l), want); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("connections open per lane %v a minute on, want %v", open(l), want)
			}
		}
	}
	for _, tc := range []struct {
		n         int
		max, keep int32
		want      []int32
	}{
		{3, 7, 7, []int32{3, 2, 2}},
		{3, 7, 4, []int32{2, 1, 1}},
		{2, 2, 9, []int32{1, 1}},
	} {
		l, err := NewLanes(context.Background(), url, tc.n, PoolOptions{MaxConns: tc.max, MinConns: tc.keep})
		if err != nil {
			t.Fatal(err)
		}
		waitOpen(l, tc.want)
		if tc.keep == tc.max {
			// A connection closed (its backend ended) is opened again.
			p := l.Pools()[0]
			c, err := p.Acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			_ = c.Conn().Close(context.Background())
			c.Release()
			waitOpen(l, tc.want)
		}
		l.Close()
	}
	lazy := openLanes(t, url, 2, 4)
	time.Sleep(200 * time.Millisecond)
	if got := open(lazy); !slices.Equal(got, []int32{0, 0}) {
		t.Fatalf("lanes without MinConns opened %v connections unasked", got)
	}
	if _, err := NewPool(context.Background(), url, PoolOptions{MinConns: -1}); err == nil {
		t.Error("NewPool with MinConns -1: no error")
	}
}

// index returns the position of p among l's lanes, or -1.
func index(l *Lanes, p *pgxpool.Pool) int {
	return slices.Index(l.Pools(), p)
}

// TestLanesForIsStableAndSpreads: an idle tenant always gets the same
// lane, and many tenants use every lane.
func TestLanesForIsStableAndSpreads(t *testing.T) {
	l := openLanes(t, testenv.Postgres(t), 4, 8)
	used := map[int]int{}
	for i := range 200 {
		s := fmt.Sprintf("tenant_t%03d", i)
		first := index(l, l.For(s))
		for range 3 {
			if got := index(l, l.For(s)); got != first {
				t.Fatalf("For(%s): lane %d, then %d", s, first, got)
			}
		}
		used[first]++
	}
	for i := range 4 {
		if used[i] < 25 { // 50 expected of 200
			t.Errorf("lane %d is the first lane of %d of 200 tenants: %v", i, used[i], used)
		}
	}
}

// TestLanesForGivesWayToLoad: with its first lane's connections all taken a
// tenant gets its second lane, then the lane with the most free
// connections, and with every connection taken its first lane again, where
// Acquire waits until a connection of that lane is released.
func TestLanesForGivesWayToLoad(t *testing.T) {
	ctx := context.Background()
	l := openLanes(t, testenv.Postgres(t), 4, 8) // 2 connections per lane
	const s = "tenant_acme"
	first := l.For(s)

	var held []*pgxpool.Conn
	hold := func(p *pgxpool.Pool, n int) {
		t.Helper()
		for range n {
			c, err := p.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
	}
	defer func() {
		for _, c := range held {
			c.Release()
		}
	}()

	hold(first, 1)
	before := [4]uint64{l.Chosen(LaneFirst), l.Chosen(LaneSecond), l.Chosen(LaneOther), l.Chosen(LaneFull)}
	if got := l.For(s); got != first {
		t.Fatalf("first lane with a free connection: For gave lane %d, want %d", index(l, got), index(l, first))
	}
	hold(first, 1)
	second := l.For(s)
	if second == first {
		t.Fatal("first lane full: For still gave it")
	}
	if got := l.For(s); got != second {
		t.Fatal("second choice is not stable")
	}
	hold(second, 2)
	third := l.For(s)
	if third == first || third == second {
		t.Fatalf("both lanes full: For gave lane %d", index(l, third))
	}
	// Take one connection of the third lane: the fourth now has more free.
	hold(third, 1)
	var fourth *pgxpool.Pool
	for _, p := range l.Pools() {
		if p != first && p != second && p != third {
			fourth = p
		}
	}
	if got := l.For(s); got != fourth {
		t.Fatalf("For gave lane %d, want the one with the most free connections (%d)", index(l, got), index(l, fourth))
	}
	if got := l.Any(); got != fourth {
		t.Fatalf("Any gave lane %d, want %d", index(l, got), index(l, fourth))
	}
	hold(third, 1)
	hold(fourth, 2)
	if got := l.For(s); got != first {
		t.Fatalf("all full: For gave lane %d, want the first lane %d", index(l, got), index(l, first))
	}
	// Counted above: first once; second twice; other twice (third, fourth);
	// full once, and once more for the unit below.
	after := [4]uint64{l.Chosen(LaneFirst), l.Chosen(LaneSecond), l.Chosen(LaneOther), l.Chosen(LaneFull)}
	if want := [4]uint64{1, 2, 2, 1}; [4]uint64{after[0] - before[0], after[1] - before[1], after[2] - before[2], after[3] - before[3]} != want {
		t.Errorf("Chosen first/second/other/full: %v -> %v, want +%v", before, after, want)
	}
	if LaneFirst.String() != "first" || LaneFull.String() != "full" {
		t.Errorf("LaneChoice names: %s, %s", LaneFirst, LaneFull)
	}

	// A unit on the full first lane waits for that lane's connection.
	done := make(chan error, 1)
	go func() {
		done <- InTenant(tenantCtx(ctx, "tenant_lanes"), l.For(s), func(ctx context.Context, tx pgx.Tx) error {
			return nil // the schema need not exist for an empty unit
		})
	}()
	select {
	case err := <-done:
		t.Fatalf("unit ran with every connection taken: %v", err)
	default:
	}
	// Release one of the first lane's connections (the first two held).
	held[0].Release()
	held = held[1:]
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestLanesCountConnectionsBeingOpened: a connection being opened for a
// unit is taken: while a lane's only connection is being opened (here it
// never opens: the server accepts and says nothing), the next unit of the
// tenant goes to its second lane instead of waiting behind it.
func TestLanesCountConnectionsBeingOpened(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	l := openLanes(t, fmt.Sprintf("postgres://nobody@%s/silent?sslmode=disable&connect_timeout=10", ln.Addr()), 2, 2) // 1 connection per lane
	const s = "tenant_acme"
	first := l.For(s)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	acquired := make(chan error, 1)
	go func() {
		c, err := first.Acquire(ctx)
		if err == nil {
			c.Release()
		}
		acquired <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for first.Stat().ConstructingConns() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first lane never began opening its connection")
		}
		time.Sleep(time.Millisecond)
	}
	if got := l.For(s); got == first {
		t.Errorf("For gave the first lane, whose only connection is being opened for another unit")
	}
	cancel()
	if err := <-acquired; err == nil {
		t.Error("a connection to a server that never answers was acquired")
	}
}

// TestLanesKeepTenantsOnTheirBackends: one tenant's units, each started
// with the lanes idle, all run on one PostgreSQL backend, so each backend
// serves a part of the tenants; and each unit is pinned to its own
// tenant's schema whatever lane it ran on (the lanes are NewPool's pools).
// (The test waits for the lanes to be idle because pgxpool hands a released
// connection back in a goroutine, after AfterRelease: until then the lane
// counts it as taken, and the next unit may take its second lane.)
func TestLanesKeepTenantsOnTheirBackends(t *testing.T) {
	ctx := context.Background()
	url := testenv.Postgres(t)
	admin, _ := newTestPool(t, url, 2, nil)
	var tenants []string
	for i := range 12 {
		s := fmt.Sprintf("tenant_lane%02d", i)
		migrateTenant(t, admin, s)
		tenants = append(tenants, s)
	}
	l := openLanes(t, url, 6, 6)
	backends := map[string]map[uint32]bool{} // tenant -> backend pids
	served := map[uint32]map[string]bool{}   // backend pid -> tenants
	for range 20 {
		for _, s := range tenants {
			waitIdle(t, l)
			var pid uint32
			var name string
			err := InTenant(tenantCtx(ctx, s), l.For(s), func(ctx context.Context, tx pgx.Tx) error {
				return tx.QueryRow(ctx, "SELECT pg_backend_pid(), (SELECT name FROM customers)").Scan(&pid, &name)
			})
			if err != nil {
				t.Fatal(err)
			}
			if name != s {
				t.Fatalf("unit of %s read customer %q", s, name)
			}
			if backends[s] == nil {
				backends[s] = map[uint32]bool{}
			}
			if served[pid] == nil {
				served[pid] = map[string]bool{}
			}
			backends[s][pid], served[pid][s] = true, true
		}
	}
	for s, p := range backends {
		if len(p) != 1 {
			t.Errorf("%s's units ran on %d backends, want its first lane's one", s, len(p))
		}
	}
	for pid, ts := range served {
		if len(ts) == len(tenants) {
			t.Errorf("backend %d served all %d tenants", pid, len(ts))
		}
		t.Logf("backend %d served %d of %d tenants", pid, len(ts), len(tenants))
	}
}

// waitIdle waits until no lane has a connection acquired.
func waitIdle(t *testing.T, l *Lanes) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		busy := int32(0)
		for _, p := range l.Pools() {
			busy += p.Stat().AcquiredConns()
		}
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still acquired after 10 s", busy)
		}
		time.Sleep(time.Millisecond)
	}
}
