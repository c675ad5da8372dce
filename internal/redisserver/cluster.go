package redisserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/childproc"
)

// Defaults of ClusterOptions.
const (
	DefaultClusterMasters     = 3
	DefaultClusterNodeTimeout = 1500 * time.Millisecond
	// clusterStartTimeout bounds creating the cluster and waiting for it.
	clusterStartTimeout = 90 * time.Second
)

// ClusterOptions configures StartCluster.
type ClusterOptions struct {
	// Dir holds one directory per node (node-0, node-1, ...). It must
	// exist; the caller owns it and removes it.
	Dir string
	// Masters is the number of masters; 0 means DefaultClusterMasters (3,
	// the least redis-cli accepts).
	Masters int
	// Replicas is the number of replicas of each master; 0 means 1 (a
	// negative value means none).
	Replicas int
	// NodeTimeout is cluster-node-timeout: how long a master may be
	// unreachable before it is failed over. 0 means
	// DefaultClusterNodeTimeout.
	NodeTimeout time.Duration
	// Bin is the redis-server binary; CLIBin redis-cli. Empty: PATH, then
	// /usr/bin.
	Bin, CLIBin string
	// TLS, when set, makes every node TLS-only (Options.TLS), its cluster
	// bus and replication included (tls-cluster, tls-replication): the
	// slot map then names the nodes' TLS ports, URL is a rediss-cluster://
	// URL, and Client and the Cluster's own checks trust TLS.CA.
	TLS *TLS
}

// Cluster is a Redis Cluster of redis-server processes on 127.0.0.1, made
// by StartCluster: each node with its own directory (nodes.conf,
// redis.log), client port and cluster bus port. Its methods are safe for
// concurrent use.
type Cluster struct {
	opts  ClusterOptions
	nodes []*Server
}

// StartCluster starts Masters*(1+Replicas) cluster-enabled servers on free
// loopback ports, joins them with `redis-cli --cluster create
// --cluster-replicas N --cluster-yes`, and returns once every node reports
// cluster_state:ok, agrees on who serves every slot, and every replica's
// link to its master is up (so that a master can be failed over). On error
// nothing is left running and the error says why (with the log of the node
// at fault).
func StartCluster(ctx context.Context, opts ClusterOptions) (_ *Cluster, err error) {
	if opts.Dir == "" {
		return nil, errors.New("start redis cluster: ClusterOptions.Dir is empty")
	}
	if opts.Masters == 0 {
		opts.Masters = DefaultClusterMasters
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	opts.Replicas = max(opts.Replicas, 0)
	if opts.NodeTimeout == 0 {
		opts.NodeTimeout = DefaultClusterNodeTimeout
	}
	if opts.Bin == "" {
		if opts.Bin, err = FindBinary(); err != nil {
			return nil, err
		}
	}
	if opts.CLIBin == "" {
		if opts.CLIBin, err = findCLI(); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, clusterStartTimeout)
	defer cancel()
	c := &Cluster{opts: opts}
	defer func() {
		if err != nil {
			c.Kill()
		}
	}()
	total := opts.Masters * (1 + opts.Replicas)
	for i := range total {
		dir := filepath.Join(opts.Dir, fmt.Sprintf("node-%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("start redis cluster: %w", err)
		}
		s, err := c.startNode(ctx, dir)
		if err != nil {
			return nil, fmt.Errorf("start redis cluster node %d: %w", i, err)
		}
		c.nodes = append(c.nodes, s)
	}
	var args []string
	if opts.TLS != nil {
		args = append(args, "--tls", "--cacert", opts.TLS.CA)
	}
	args = append(args, "--cluster", "create")
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(opts.Replicas), "--cluster-yes")
	out, err := exec.CommandContext(ctx, opts.CLIBin, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("start redis cluster: redis-cli --cluster create: %w\n%s", err, out)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		return nil, fmt.Errorf("start redis cluster: %w", err)
	}
	return c, nil
}

// startNode starts one cluster-enabled server in dir, retrying with new
// ports when one was taken meanwhile.
func (c *Cluster) startNode(ctx context.Context, dir string) (*Server, error) {
	var lastErr error
	for range 3 {
		port, err := childproc.FreePort()
		if err != nil {
			return nil, err
		}
		bus, err := childproc.FreePort()
		if err != nil {
			return nil, err
		}
		args := []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", strconv.FormatInt(c.opts.NodeTimeout.Milliseconds(), 10),
			"--cluster-port", strconv.Itoa(bus),
			// A replica's first sync starts at once: Redis 7 waits 5 s
			// (repl-diskless-sync-delay) for more replicas to share a
			// diskless sync, and each master here has one replica.
			"--repl-diskless-sync-delay", "0",
		}
		if c.opts.TLS != nil {
			args = append(args, "--tls-cluster", "yes", "--tls-replication", "yes")
		}
		s, err := Start(ctx, Options{Dir: dir, Port: port, Bin: c.opts.Bin, ExtraArgs: args, TLS: c.opts.TLS})
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, ErrPortInUse) {
			return nil, err
		}
		_ = os.Remove(filepath.Join(dir, "nodes.conf"))
	}
	return nil, lastErr
}

// findCLI returns the path of redis-cli (PATH, then /usr/bin).
func findCLI() (string, error) {
	if p, err := exec.LookPath("redis-cli"); err == nil {
		return p, nil
	}
	p := "/usr/bin/redis-cli"
	if st, err := os.Stat(p); err == nil && !st.IsDir() {
		return p, nil
	}
	return "", fmt.Errorf("find redis-cli on PATH or in /usr/bin: %w", ErrNotInstalled)
}

// Nodes returns every node, in the order they were started (not by role:
// see Masters).
func (c *Cluster) Nodes() []*Server { return c.nodes }

// Addrs returns every node's "127.0.0.1:port".
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr()
	}
	return out
}

// URL returns the cluster as a REDIS_URL: "redis-cluster://" (with TLS
// "rediss-cluster://") and every node's address, comma-separated.
func (c *Cluster) URL() string {
	if c.opts.TLS != nil {
		return "rediss-cluster://" + strings.Join(c.Addrs(), ",")
	}
	return "redis-cluster://" + strings.Join(c.Addrs(), ",")
}

// TLS returns ClusterOptions.TLS: nil for a plain cluster.
func (c *Cluster) TLS() *TLS { return c.opts.TLS }

// NodeTimeout returns the cluster-node-timeout the nodes run with.
func (c *Cluster) NodeTimeout() time.Duration { return c.opts.NodeTimeout }

// Client returns a new go-redis cluster client on every node's address
// that reloads its slot map every 500 ms while in use (go-redis's default,
// 60 s, keeps a dead master's slots pointing at it that long); the caller
// closes it.
func (c *Cluster) Client() *redis.ClusterClient {
	var tlsConfig *tls.Config
	if len(c.nodes) > 0 {
		tlsConfig = c.nodes[0].TLSConfig()
	}
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), ClusterStateReloadInterval: 500 * time.Millisecond, TLSConfig: tlsConfig})
}

// nodeByAddr returns the node listening on addr ("127.0.0.1:port").
func (c *Cluster) nodeByAddr(addr string) *Server {
	for _, n := range c.nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id, addr, master string
	flags            []string
	slots            []string
}

func (n clusterNode) has(flag string) bool {
	for _, f := range n.flags {
		if f == flag {
			return true
		}
	}
	return false
}

// nodesOf asks the running node s for CLUSTER NODES.
func nodesOf(ctx context.Context, s *Server) ([]clusterNode, error) {
	rdb := s.NewClient(redis.Options{MaxRetries: -1, PoolSize: 1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	raw, err := rdb.ClusterNodes(ctx).Result()
	if err != nil {
		return nil, err
	}
	var out []clusterNode
	for _, line := range strings.Split(strings.TrimSpace(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@") // ip:port@busport[,hostname]
		out = append(out, clusterNode{id: f[0], addr: addr, flags: strings.Split(f[2], ","), master: f[3], slots: f[8:]})
	}
	return out, nil
}

// clusterInfo asks the running node s for one field of CLUSTER INFO.
func clusterInfo(ctx context.Context, s *Server, field string) (string, error) {
	rdb := s.NewClient(redis.Options{MaxRetries: -1, PoolSize: 1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	raw, err := rdb.ClusterInfo(ctx).Result()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(raw, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("CLUSTER INFO of %s has no %s", s.Addr(), field)
}

// health returns nil when every running node reports cluster_state:ok,
// every running node sees the same masters serving slots, every one of
// those masters is running, and every running replica's link to its
// master is up.
func (c *Cluster) health(ctx context.Context) error {
	var masters string
	for _, n := range c.nodes {
		if !n.Running() {
			continue
		}
		state, err := clusterInfo(ctx, n, "cluster_state")
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Addr(), err)
		}
		if state != "ok" {
			return fmt.Errorf("node %s: cluster_state:%s", n.Addr(), state)
		}
		nodes, err := nodesOf(ctx, n)
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Addr(), err)
		}
		var serving []string
		for _, cn := range nodes {
			if cn.has("master") && len(cn.slots) > 0 && !cn.has("fail") && !cn.has("fail?") {
				if m := c.nodeByAddr(cn.addr); m == nil || !m.Running() {
					return fmt.Errorf("node %s: slots %v are served by %s, which is down", n.Addr(), cn.slots, cn.addr)
				}
				serving = append(serving, cn.addr+" "+strings.Join(cn.slots, " "))
			}
		}
		got := strings.Join(sortedCopy(serving), "; ")
		if masters == "" {
			masters = got
		} else if got != masters {
			return fmt.Errorf("nodes disagree about the slot map: %q vs %q", masters, got)
		}
		if link, err := replicaLink(ctx, n); err != nil {
			return fmt.Errorf("node %s: %w", n.Addr(), err)
		} else if link != "" && link != "up" {
			return fmt.Errorf("replica %s: master_link_status:%s", n.Addr(), link)
		}
	}
	if masters == "" {
		return errors.New("no node is running")
	}
	return nil
}

// replicaLink returns master_link_status of a replica, "" for a master.
func replicaLink(ctx context.Context, s *Server) (string, error) {
	rdb := s.NewClient(redis.Options{MaxRetries: -1, PoolSize: 1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	raw, err := rdb.Info(ctx, "replication").Result()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(raw, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "master_link_status:"); ok {
			return v, nil
		}
	}
	return "", nil
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// WaitHealthy polls (every 50 ms) until the running nodes form a healthy
// cluster (see StartCluster) or ctx ends, and returns the last reason it
// was not healthy then. After a master was killed, it returns once a
// replica has taken over the master's slots.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	var last error
	for {
		if last = c.health(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not healthy: %w (%v)", last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Masters returns the running nodes that are masters serving slots, as
// the first running node sees it.
func (c *Cluster) Masters(ctx context.Context) ([]*Server, error) {
	for _, n := range c.nodes {
		if !n.Running() {
			continue
		}
		nodes, err := nodesOf(ctx, n)
		if err != nil {
			return nil, err
		}
		var out []*Server
		for _, cn := range nodes {
			if cn.has("master") && len(cn.slots) > 0 && !cn.has("fail") {
				if m := c.nodeByAddr(cn.addr); m != nil && m.Running() {
					out = append(out, m)
				}
			}
		}
		return out, nil
	}
	return nil, errors.New("no node is running")
}

// MasterOf returns the node serving key's hash slot (CLUSTER KEYSLOT, then
// the slot map of the first running node).
func (c *Cluster) MasterOf(ctx context.Context, key string) (*Server, int, error) {
	for _, n := range c.nodes {
		if !n.Running() {
			continue
		}
		rdb := n.NewClient(redis.Options{MaxRetries: -1, PoolSize: 1})
		slot, err := rdb.ClusterKeySlot(ctx, key).Result()
		_ = rdb.Close()
		if err != nil {
			return nil, 0, err
		}
		nodes, err := nodesOf(ctx, n)
		if err != nil {
			return nil, 0, err
		}
		for _, cn := range nodes {
			if !cn.has("master") || cn.has("fail") {
				continue
			}
			for _, r := range cn.slots {
				lo, hi, ok := strings.Cut(r, "-")
				if !ok {
					hi = lo
				}
				l, err1 := strconv.ParseInt(lo, 10, 64)
				h, err2 := strconv.ParseInt(hi, 10, 64)
				if err1 == nil && err2 == nil && l <= slot && slot <= h {
					return c.nodeByAddr(cn.addr), int(slot), nil
				}
			}
		}
		return nil, int(slot), fmt.Errorf("no master serves slot %d of %q", slot, key)
	}
	return nil, 0, errors.New("no node is running")
}

// Kill kills every node at once (SIGKILL); their directories stay.
func (c *Cluster) Kill() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(n.Kill)
	}
	wg.Wait()
}

// Stop stops every node (SIGTERM, then SIGKILL after five seconds or when
// ctx ends).
func (c *Cluster) Stop(ctx context.Context) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, n := range c.nodes {
		wg.Go(func() {
			if err := n.Stop(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
