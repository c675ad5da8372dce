package redisserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/childproc"
)

// startTimeout bounds how long redis-server may take to answer PING.
const startTimeout = 15 * time.Second

// ErrPortInUse is wrapped by Start's error when the port is taken.
var ErrPortInUse = errors.New("address already in use")

// Options configures Start.
type Options struct {
	// Dir holds the server's files: its data files and redis.log. It must
	// exist; the caller owns it and removes it.
	Dir string
	// Port is the TCP port on 127.0.0.1. Zero: a free port (a start that
	// loses a race for it is retried once on another).
	Port int
	// AppendOnly turns on the append-only file (appendonly yes), so data
	// written before Stop or Restart is there again after Start.
	AppendOnly bool
	// Bin is the redis-server binary. Empty: FindBinary.
	Bin string
	// ExtraArgs are appended to the command line (e.g. the cluster
	// settings StartCluster passes).
	ExtraArgs []string
	// ConfigFile, when set, is a configuration file passed before the
	// other arguments (a Sentinel needs one it can rewrite, with
	// ExtraArgs "--sentinel").
	ConfigFile string
	// TLS, when set, makes Port a TLS port and the only one (port 0,
	// tls-port Port, clients not asked for a certificate); the start-up
	// check and the Cluster's own clients then trust TLS.CA.
	TLS *TLS
}

// TLS are the PEM files of a TLS-only server: the server's certificate and
// key, and the authority that signed it (which the server also trusts for
// the certificates of its peers: replicas, cluster nodes, Sentinels).
type TLS struct {
	CA, Cert, Key string
}

// args returns the redis-server arguments of a TLS-only server on port.
func (t *TLS) args(port int) []string {
	return []string{
		"--port", "0",
		"--tls-port", strconv.Itoa(port),
		"--tls-cert-file", t.Cert, "--tls-key-file", t.Key, "--tls-ca-cert-file", t.CA,
		"--tls-auth-clients", "no",
	}
}

// ClientConfig returns a client TLS configuration trusting t.CA; nil for a
// nil t (a plain server).
func (t *TLS) ClientConfig() (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	pem, err := os.ReadFile(t.CA)
	if err != nil {
		return nil, fmt.Errorf("read the test CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", t.CA)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// Server is a redis-server started by Start. Stop, Start and Restart keep
// the port and the directory. Its methods are safe for concurrent use.
type Server struct {
	bin     string
	opts    Options
	logPath string
	port    int // fixed once Start returns
	// tlsConfig is the client side of Options.TLS; nil for a plain server.
	tlsConfig *tls.Config

	mu   sync.Mutex
	proc *childproc.Process // nil while stopped
}

// Start starts redis-server and returns once it answers PING. The server
// runs until Stop, or until the calling process dies. On error nothing is
// left running.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("start redis-server: Options.Dir is empty")
	}
	bin := opts.Bin
	if bin == "" {
		var err error
		if bin, err = FindBinary(); err != nil {
			return nil, err
		}
	}
	s := &Server{bin: bin, opts: opts, logPath: filepath.Join(opts.Dir, "redis.log"), port: opts.Port}
	var err error
	if s.tlsConfig, err = opts.TLS.ClientConfig(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if opts.Port != 0 {
		if err := s.startLocked(ctx); err != nil {
			return nil, err
		}
		return s, nil
	}
	for range 2 {
		if s.port, err = childproc.FreePort(); err != nil {
			return nil, err
		}
		if err = s.startLocked(ctx); err == nil {
			return s, nil
		}
		if !errors.Is(err, ErrPortInUse) {
			return nil, err
		}
	}
	return nil, err
}

// startLocked starts redis-server on s.port and waits for PING. s.mu must
// be held.
func (s *Server) startLocked(ctx context.Context) error {
	if s.proc != nil {
		return nil
	}
	appendOnly := "no"
	if s.opts.AppendOnly {
		appendOnly = "yes"
	}
	logStart, _ := os.Stat(s.logPath)
	var args []string
	if s.opts.ConfigFile != "" {
		args = append(args, s.opts.ConfigFile)
	}
	if s.opts.TLS != nil {
		args = append(args, s.opts.TLS.args(s.port)...)
	} else {
		args = append(args, "--port", strconv.Itoa(s.port))
	}
	args = append(args,
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", appendOnly,
		"--dir", s.opts.Dir,
		"--daemonize", "no",
		"--logfile", "", // to stdout, which goes to redis.log
	)
	args = append(args, s.opts.ExtraArgs...)
	proc, err := childproc.Start(s.bin, args, childproc.Options{
		Dir:        s.opts.Dir,
		LogPath:    s.logPath,
		StopSignal: syscall.SIGTERM,
	})
	if err != nil {
		return err
	}
	if err := waitReady(ctx, proc, s.Addr(), s.tlsConfig); err != nil {
		proc.Kill()
		log := childproc.ReadLogSince(s.logPath, logStart)
		if strings.Contains(log, "already in use") {
			err = fmt.Errorf("%w: %w", ErrPortInUse, err)
		}
		return fmt.Errorf("start redis-server on port %d: %w\nserver log:\n%s", s.port, err, log)
	}
	s.proc = proc
	return nil
}

// waitReady polls until the server answers PING, exits, ctx ends or
// startTimeout passes. It waits for the port with plain TCP dials first: a
// go-redis pool whose dials fail logs each failure and keeps a retry
// goroutine alive.
func waitReady(ctx context.Context, proc *childproc.Process, addr string, tlsConfig *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var lastErr error
	for {
		if proc.Exited() {
			return fmt.Errorf("server exited: %v", proc.Err())
		}
		if lastErr = ping(ctx, addr, proc.Pid(), tlsConfig); lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("no answer to PING after %s: %w", startTimeout, lastErr)
			}
			return fmt.Errorf("no answer to PING: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// ping checks that addr accepts connections, answers PING, and is the
// server started as pid (INFO server's process_id): another process that
// took the free port between our check and the server's bind would
// otherwise pass for ours. A server that does not know INFO (disabled by
// rename-command in ExtraArgs) is taken at its PING: another redis-server
// that took the port would answer INFO with its own process_id. A non-nil
// tlsConfig pings over TLS.
func ping(ctx context.Context, addr string, pid int, tlsConfig *tls.Config) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	_ = conn.Close()

	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1, TLSConfig: tlsConfig})
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		return err // LOADING while the AOF is read
	}
	info, err := client.Info(ctx, "server").Result()
	if err != nil {
		if strings.HasPrefix(err.Error(), "ERR unknown command") {
			return nil
		}
		return err
	}
	want := fmt.Sprintf("process_id:%d", pid)
	for _, line := range strings.Split(info, "\n") {
		if strings.TrimSpace(line) == want {
			return nil
		}
	}
	return fmt.Errorf("%s answers, but it is not the redis-server we started (pid %d): %w", addr, pid, ErrPortInUse)
}

// TLSConfig returns a client TLS configuration trusting the server's CA
// (Options.TLS), or nil for a plain server. Its clients must dial Addr.
func (s *Server) TLSConfig() *tls.Config {
	if s.tlsConfig == nil {
		return nil
	}
	return s.tlsConfig.Clone()
}

// NewClient returns a go-redis client of the server (over TLS for a
// TLS-only server) with opts' other settings; the caller closes it.
func (s *Server) NewClient(opts redis.Options) *redis.Client {
	opts.Addr, opts.TLSConfig = s.Addr(), s.TLSConfig()
	return redis.NewClient(&opts)
}

// Port returns the TCP port the server listens on (on 127.0.0.1).
func (s *Server) Port() int { return s.port }

// Dir returns the server's directory.
func (s *Server) Dir() string { return s.opts.Dir }

// LogPath returns the path of the server's log file.
func (s *Server) LogPath() string { return s.logPath }

// Addr returns the server's address, "127.0.0.1:port".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL returns the server's URL, "redis://127.0.0.1:port" (rediss://
// for a TLS-only server).
func (s *Server) URL() string {
	if s.opts.TLS != nil {
		return "rediss://" + s.Addr()
	}
	return "redis://" + s.Addr()
}

// Stop stops the server (SIGTERM, which writes the append-only file when
// enabled; SIGKILL to its process group after five seconds or when ctx
// ends) and waits for it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	err := s.proc.Stop(ctx)
	s.proc = nil
	if err != nil {
		return fmt.Errorf("stop redis-server on port %d: %w", s.port, err)
	}
	return nil
}

// Kill kills the server at once (SIGKILL to its process group: no
// shutdown, nothing written) and waits for it to exit, as a crashed host
// would. Killing a stopped server does nothing; Start brings it back.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	s.proc.Kill()
	s.proc = nil
}

// Running reports whether the server was started and not stopped or
// killed since (a server that crashed on its own still counts as
// running).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// Start starts a stopped server again on the same port and directory and
// waits until it answers PING. Starting a running server does nothing.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startLocked(ctx)
}

// Restart stops and starts the server. Data survives only with AppendOnly.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(ctx); err != nil {
		return err
	}
	return s.Start(ctx)
}
