package pgserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/childproc"
)

// startTimeout bounds how long a started postgres may take to accept
// connections.
const startTimeout = 30 * time.Second

// stopGrace is how long postgres gets to shut down after SIGINT before its
// process group is killed.
const stopGrace = 5 * time.Second

// defaultMaxConnections is Options.MaxConnections when zero.
const defaultMaxConnections = 100

// ErrPortInUse is wrapped by Start's error when the requested port is taken.
var ErrPortInUse = errors.New("address already in use")

// Options configures Start. The zero value is a server in a new temporary
// directory under os.TempDir(), on a free port, without fsync.
type Options struct {
	// Dir holds the server's files: data/ (the data directory) and
	// postgres.log. Empty: a new temporary directory pgserver-<pid>-*
	// under TempRoot. When Dir does not exist, Start creates it. Stop
	// removes Dir only when Start created it. When Dir already holds an
	// initialized data directory (data/PG_VERSION), Start uses it as is.
	Dir string
	// TempRoot is where the temporary directory goes when Dir is empty.
	// Empty: os.TempDir().
	TempRoot string
	// Port is the TCP port on 127.0.0.1. Zero: a free port (a start that
	// loses a race for it is retried once on another).
	Port int
	// Logger receives start and stop events. Nil: nothing is logged.
	Logger *slog.Logger
	// Fsync makes the server durable. False (for tests and development)
	// turns off fsync, synchronous_commit and full_page_writes.
	Fsync bool
	// MaxConnections is postgres's max_connections. Zero: 100.
	MaxConnections int
}

// Server is a PostgreSQL server started by Start, listening on 127.0.0.1
// with trust authentication and superuser "postgres". Its methods are safe
// for concurrent use.
type Server struct {
	bin     binaries
	user    *serviceUser
	opts    Options
	logger  *slog.Logger
	dir     string
	dataDir string
	logPath string
	ownsDir bool
	port    int // fixed once Start returns

	mu      sync.Mutex
	proc    *childproc.Process // nil while stopped
	removed bool               // Stop removed the directory
}

// Start initializes the data directory (unless it exists) and starts a
// server, returning once it accepts connections. The server runs until Stop,
// or until the calling process dies. On error nothing is left running and a
// directory Start created is removed.
//
// Errors: ErrNotInstalled when the binaries are missing; ErrPortInUse when
// Options.Port is taken; ErrDirUnreachable when running as root and the
// postgres user cannot reach Dir.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	usr, err := lookupServiceUser()
	if err != nil {
		return nil, err
	}
	s := &Server{
		bin:    bin,
		user:   usr,
		opts:   opts,
		logger: opts.Logger,
		port:   opts.Port,
	}
	if s.logger == nil {
		s.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := s.makeDir(); err != nil {
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		if s.ownsDir {
			_ = os.RemoveAll(s.dir)
			liveDirs.Delete(s.dir)
		}
		return nil, err
	}
	return s, nil
}

// Init runs initdb into opts.Dir's data directory (data/, created with
// Dir when missing) as Start would, without starting a server: a caller
// that needs many throwaway servers initializes one directory and copies
// its data/ (owner and modes kept) into each server's Dir, which Start then
// uses as is. Only Dir and Fsync are used; Dir must not hold a data
// directory yet.
func Init(ctx context.Context, opts Options) error {
	if opts.Dir == "" {
		return errors.New("init postgres data directory: no directory given")
	}
	bin, err := findBinaries()
	if err != nil {
		return err
	}
	usr, err := lookupServiceUser()
	if err != nil {
		return err
	}
	s := &Server{bin: bin, user: usr, opts: opts}
	if err := s.makeDir(); err != nil {
		return err
	}
	if err := s.user.checkReachable(s.dir); err != nil {
		return fmt.Errorf("init postgres in %s: %w", s.dir, err)
	}
	return s.initdb(ctx)
}

// makeDir creates or adopts the server's directory.
func (s *Server) makeDir() error {
	switch {
	case s.opts.Dir == "":
		root := cmp.Or(s.opts.TempRoot, os.TempDir())
		root, err := filepath.Abs(root)
		if err != nil {
			return fmt.Errorf("resolve postgres temp root: %w", err)
		}
		liveMu.Lock()
		dir, err := os.MkdirTemp(root, tempDirPattern())
		if err == nil {
			liveDirs.Store(dir, true)
		}
		liveMu.Unlock()
		if err != nil {
			return fmt.Errorf("create postgres directory: %w", err)
		}
		s.dir, s.ownsDir = dir, true
	default:
		dir, err := filepath.Abs(s.opts.Dir)
		if err != nil {
			return fmt.Errorf("resolve postgres directory %s: %w", s.opts.Dir, err)
		}
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("create postgres directory: %w", err)
			}
			s.ownsDir = true
		} else if err != nil {
			return fmt.Errorf("postgres directory: %w", err)
		}
		s.dir = dir
	}
	s.dataDir = filepath.Join(s.dir, "data")
	s.logPath = filepath.Join(s.dir, "postgres.log")
	if s.ownsDir {
		// MkdirTemp makes 0700; the postgres user must reach data/.
		if err := os.Chmod(s.dir, 0o755); err != nil {
			_ = os.RemoveAll(s.dir)
			liveDirs.Delete(s.dir)
			return fmt.Errorf("chmod postgres directory: %w", err)
		}
	}
	return nil
}

// start initializes the data directory when needed and starts the server.
func (s *Server) start(ctx context.Context) error {
	if err := s.user.checkReachable(s.dir); err != nil {
		return fmt.Errorf("start postgres in %s: %w", s.dir, err)
	}
	begin := time.Now()
	if _, err := os.Stat(filepath.Join(s.dataDir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := s.initdb(ctx); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.Port != 0 {
		if err := s.startLocked(ctx); err != nil {
			return err
		}
	} else if err := s.startFreePortLocked(ctx); err != nil {
		return err
	}
	s.logger.Info("postgres started", "port", s.port, "dir", s.dir, "binary", s.bin.postgres, "took", time.Since(begin).Round(time.Millisecond))
	return nil
}

// initdb creates the data directory, owned by the service user.
func (s *Server) initdb(ctx context.Context) error {
	if err := os.Mkdir(s.dataDir, 0o700); err != nil {
		return fmt.Errorf("create postgres data directory: %w", err)
	}
	if err := s.user.chown(s.dataDir); err != nil {
		return err
	}
	args := []string{
		"-D", s.dataDir, "-A", "trust", "-U", "postgres",
		"-E", "UTF8", "--locale=C", "--no-instructions",
	}
	if !s.opts.Fsync {
		args = append(args, "--no-sync")
	}
	cmd := childproc.Command(ctx, s.bin.initdb, args, s.dir, s.user.credential())
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("initdb %s: %w", s.dataDir, ctx.Err())
		}
		return fmt.Errorf("initdb %s: %w\n%s", s.dataDir, err, out)
	}
	return nil
}

// startFreePortLocked starts the server on a free port, retrying once on
// another port when the first was taken in the meantime. s.mu must be held.
func (s *Server) startFreePortLocked(ctx context.Context) error {
	var err error
	for range 2 {
		if s.port, err = childproc.FreePort(); err != nil {
			return err
		}
		if err = s.startLocked(ctx); !errors.Is(err, ErrPortInUse) {
			return err
		}
	}
	return err
}

// startLocked starts postgres on s.port and waits until it accepts
// connections. s.mu must be held.
func (s *Server) startLocked(ctx context.Context) error {
	if s.proc != nil {
		return nil
	}
	if s.removed {
		return fmt.Errorf("start postgres: server was stopped and its directory %s removed", s.dir)
	}
	logStart, _ := os.Stat(s.logPath)
	args := []string{
		"-D", s.dataDir,
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
		"-c", "max_connections=" + strconv.Itoa(cmp.Or(s.opts.MaxConnections, defaultMaxConnections)),
		// Dynamic shared memory in the data directory rather than in
		// /dev/shm/PostgreSQL.*, so that a killed server leaves nothing
		// behind once its directory is removed.
		"-c", "dynamic_shared_memory_type=mmap",
	}
	if !s.opts.Fsync {
		args = append(args,
			"-c", "fsync=off",
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off",
		)
	}
	proc, err := childproc.Start(s.bin.postgres, args, childproc.Options{
		Dir:        s.dir,
		LogPath:    s.logPath,
		Credential: s.user.credential(),
		StopSignal: syscall.SIGINT, // fast shutdown
		StopGrace:  stopGrace,
	})
	if err != nil {
		return err
	}
	if err := waitReady(ctx, proc, s.URL(), s.dataDir); err != nil {
		proc.Kill()
		removeLeftSegment(s.dataDir)
		log := childproc.ReadLogSince(s.logPath, logStart)
		if errors.Is(err, errOtherServer) || strings.Contains(log, "already in use") {
			return fmt.Errorf("start postgres: port %d on 127.0.0.1: %w", s.port, ErrPortInUse)
		}
		return fmt.Errorf("start postgres on port %d: %w\nserver log (%s):\n%s", s.port, err, s.logPath, log)
	}
	s.proc = proc
	return nil
}

// errOtherServer means that a different server answered on our port.
var errOtherServer = errors.New("another server answers on the port")

// waitReady polls until the server accepts connections, exits, ctx ends or
// startTimeout passes. The server that answers must be the one serving
// dataDir: while ours fails to bind a taken port, another PostgreSQL on
// that port could answer instead.
func waitReady(ctx context.Context, proc *childproc.Process, connURL, dataDir string) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var lastErr error
	for {
		if proc.Exited() {
			return fmt.Errorf("server exited: %v", proc.Err())
		}
		pingCtx, pingCancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(pingCtx, connURL)
		var served string
		if err == nil {
			err = conn.QueryRow(pingCtx, "SELECT current_setting('data_directory')").Scan(&served)
			_ = conn.Close(pingCtx)
		}
		pingCancel()
		if err == nil {
			if served != dataDir {
				return fmt.Errorf("%w (it serves %s)", errOtherServer, served)
			}
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("not accepting connections: %w (last attempt: %v)", ctx.Err(), lastErr)
		case <-proc.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Port returns the TCP port the server listens on (on 127.0.0.1).
func (s *Server) Port() int { return s.port }

// Dir returns the server's directory (data/ and postgres.log).
func (s *Server) Dir() string { return s.dir }

// LogPath returns the path of the server's log file.
func (s *Server) LogPath() string { return s.logPath }

// URL returns the superuser URL of the server's "postgres" database.
func (s *Server) URL() string { return s.DatabaseURL("postgres") }

// DatabaseURL returns the superuser URL of database name on this server
// (whether or not it exists).
func (s *Server) DatabaseURL(name string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + name,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CreateDatabase creates an empty database name (from template0, UTF8) and
// returns its superuser URL. It fails when the database exists.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, s.URL())
	if err != nil {
		return "", fmt.Errorf("create database %s: connect: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0"); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return s.DatabaseURL(name), nil
}

// Stop stops the server (fast shutdown: open sessions are disconnected;
// SIGKILL after five seconds or when ctx ends) and removes its directory
// when Start created it. Calling Stop again does nothing.
func (s *Server) Stop(ctx context.Context) error {
	err := s.StopProcess(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ownsDir && !s.removed {
		if rmErr := os.RemoveAll(s.dir); rmErr != nil {
			return errors.Join(err, fmt.Errorf("remove postgres directory: %w", rmErr))
		}
		s.removed = true
		liveDirs.Delete(s.dir)
		s.logger.Info("postgres directory removed", "dir", s.dir)
	}
	return err
}

// StopProcess stops the server like Stop but keeps its directory and port,
// so StartProcess can start it again with its data; a server it had to
// kill leaves no shared memory segment behind. Stopping a stopped server
// does nothing.
func (s *Server) StopProcess(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	err := s.proc.Stop(ctx)
	s.proc = nil
	// Killed (past its grace, or ctx ended), it left its shared memory.
	removeLeftSegment(s.dataDir)
	if err != nil {
		return fmt.Errorf("stop postgres on port %d: %w", s.port, err)
	}
	s.logger.Info("postgres stopped", "port", s.port)
	return nil
}

// StartProcess starts a server stopped by StopProcess again, on the same
// port and data directory, and waits until it accepts connections.
// Starting a running server does nothing.
func (s *Server) StartProcess(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startLocked(ctx)
}

// Restart stops and starts the server on the same port; data survives.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.StopProcess(ctx); err != nil {
		return err
	}
	return s.StartProcess(ctx)
}
