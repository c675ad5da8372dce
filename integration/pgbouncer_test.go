package integration

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// pgbouncerBin is Debian's PgBouncer.
const pgbouncerBin = "/usr/sbin/pgbouncer"

// pgBouncer is a PgBouncer in front of one PostgreSQL server, in
// transaction pooling mode with few server connections, started for one
// test and stopped in t.Cleanup.
type pgBouncer struct {
	addr     string // 127.0.0.1:port
	poolSize int
	logPath  string
	cmd      *exec.Cmd
	done     chan struct{}
}

// startPgBouncer starts PgBouncer (pool_mode = transaction,
// default_pool_size = poolSize) for every database of the PostgreSQL server
// at pgURL (any database URL of that server, as superuser "postgres", trust
// authentication). PgBouncer refuses to run as root: as root it runs as the
// system user postgres.
//
// PgBouncer 1.18 (Debian 12) cannot pass a client's search_path startup
// parameter on (track_extra_parameters came in 1.20), so it is listed in
// ignore_startup_parameters and the application database must carry the
// empty default itself (ALTER DATABASE ... SET search_path to the empty string; see
// emptySearchPathDefault): schema.NewPool's AfterConnect check refuses
// connections where that is not so.
func startPgBouncer(t testing.TB, pgURL string, poolSize int) *pgBouncer {
	t.Helper()
	if _, err := os.Stat(pgbouncerBin); err != nil {
		t.Fatalf("pgbouncer not found at %s (%v): apt-get install pgbouncer", pgbouncerBin, err)
	}
	u, err := url.Parse(pgURL)
	if err != nil {
		t.Fatalf("parse postgres url: %v", err)
	}
	pgHost, pgPort, err := net.SplitHostPort(u.Host)
	if err != nil {
		t.Fatalf("postgres url host %q: %v", u.Host, err)
	}

	// A directory the postgres user can read and write, outside
	// t.TempDir() (whose parents are private to root).
	dir := testenv.SharedTempDir(t, "pgbouncer")

	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	b := &pgBouncer{addr: addr, poolSize: poolSize, logPath: filepath.Join(dir, "pgbouncer.log"), done: make(chan struct{})}
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %s
unix_socket_dir =
auth_type = trust
auth_file = %s
admin_users = postgres
pool_mode = transaction
default_pool_size = %d
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 500
max_db_connections = %d
server_reset_query =
ignore_startup_parameters = extra_float_digits,search_path
pidfile = %s
logfile = %s
`, pgHost, pgPort, port, filepath.Join(dir, "userlist.txt"), poolSize, poolSize,
		filepath.Join(dir, "pgbouncer.pid"), b.logPath)
	files := map[string]string{
		"pgbouncer.ini": ini,
		"userlist.txt":  `"postgres" ""` + "\n",
	}
	var cred *syscall.Credential
	var uid, gid int = -1, -1
	if os.Geteuid() == 0 {
		pu, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root and pgbouncer refuses root: look up user postgres: %v", err)
		}
		uid, _ = strconv.Atoi(pu.Uid)
		gid, _ = strconv.Atoi(pu.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("chown %s: %v", dir, err)
		}
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatalf("write %s: %v", p, err)
		}
		if uid >= 0 {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatalf("chown %s: %v", p, err)
			}
		}
	}

	cmd := exec.Command(pgbouncerBin, filepath.Join(dir, "pgbouncer.ini"))
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	out, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		t.Fatalf("pgbouncer stdout: %v", err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pgbouncer: %v", err)
	}
	b.cmd = cmd
	go func() { _ = cmd.Wait(); close(b.done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-b.done
		if t.Failed() {
			log, _ := os.ReadFile(b.logPath)
			so, _ := os.ReadFile(filepath.Join(dir, "stdout.log"))
			t.Logf("--- pgbouncer log:\n%s\n%s", tail(string(log), 6<<10), tail(string(so), 2<<10))
		}
	})

	// Ready when the admin console answers.
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := pgx.Connect(context.Background(), b.adminURL())
		if err == nil {
			_ = conn.Close(context.Background())
			return b
		}
		if isDone(b.done) || time.Now().After(deadline) {
			log, _ := os.ReadFile(b.logPath)
			so, _ := os.ReadFile(filepath.Join(dir, "stdout.log"))
			t.Fatalf("pgbouncer did not come up: %v\n%s\n%s", err, log, so)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// url returns the URL of database name through PgBouncer, with pgx in the
// exec query mode that transaction pooling needs.
func (b *pgBouncer) url(name string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     b.addr,
		Path:     "/" + name,
		RawQuery: "sslmode=disable&default_query_exec_mode=exec",
	}
	return u.String()
}

// adminURL is PgBouncer's admin console (SHOW commands, simple protocol).
func (b *pgBouncer) adminURL() string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     b.addr,
		Path:     "/pgbouncer",
		RawQuery: "sslmode=disable&default_query_exec_mode=simple_protocol",
	}
	return u.String()
}

// servers returns PgBouncer's server connections to database name (SHOW
// SERVERS): their backend pids.
func (b *pgBouncer) servers(ctx context.Context, name string) ([]int, error) {
	conn, err := pgx.Connect(ctx, b.adminURL())
	if err != nil {
		return nil, fmt.Errorf("connect pgbouncer admin: %w", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SHOW SERVERS")
	if err != nil {
		return nil, fmt.Errorf("show servers: %w", err)
	}
	defer rows.Close()
	var pids []int
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		fields := rows.FieldDescriptions()
		var db string
		pid := -1
		for i, f := range fields {
			switch f.Name {
			case "database":
				db = fmt.Sprint(vals[i])
			case "remote_pid":
				pid, _ = strconv.Atoi(fmt.Sprint(vals[i]))
			}
		}
		if db == name {
			pids = append(pids, pid)
		}
	}
	return pids, rows.Err()
}

// databaseName returns the database of a postgres URL.
func databaseName(t testing.TB, pgURL string) string {
	t.Helper()
	u, err := url.Parse(pgURL)
	if err != nil {
		t.Fatalf("parse %q: %v", pgURL, err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

// emptySearchPathDefault makes the empty search_path the default of the
// database at pgURL, for sessions that PgBouncer opens without passing the
// client's startup parameter on.
func emptySearchPathDefault(t testing.TB, pgURL string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatalf("connect %s: %v", pgURL, err)
	}
	defer conn.Close(ctx)
	db := pgx.Identifier{databaseName(t, pgURL)}.Sanitize()
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+db+" SET search_path = ''"); err != nil {
		t.Fatalf("alter database %s set search_path: %v", db, err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "...\n" + s[len(s)-n:]
	}
	return s
}
