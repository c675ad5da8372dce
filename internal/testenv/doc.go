// Package testenv starts real PostgreSQL and Redis servers for tests, and
// builds Go binaries for integration tests that run them as processes.
//
// Every package that uses testenv wraps its TestMain, so that the servers the
// test binary started are stopped and their temporary directories removed:
//
//	func TestMain(m *testing.M) {
//		os.Exit(testenv.Main(m))
//	}
//
// Packages that start servers also check for leaked goroutines with
// MainLeakCheck, which runs goleak once Main has stopped everything:
//
//	func TestMain(m *testing.M) {
//		os.Exit(testenv.MainLeakCheck(m))
//	}
//
// # PostgreSQL
//
// Postgres(t) returns the URL of a fresh, empty database for the test, as
// superuser "postgres" (trust authentication, sslmode=disable). All calls in
// one test binary share one throwaway PostgreSQL server, started on first use
// in a temporary data directory and listening on 127.0.0.1 on a free port; each call creates its own database t_<random> from template0 and
// drops it WITH (FORCE) in t.Cleanup, so tests can run in parallel:
//
//	func TestSomething(t *testing.T) {
//		t.Parallel()
//		pool, err := pgxpool.New(ctx, testenv.Postgres(t))
//		...
//	}
//
// The server is a pgserver.Server (package internal/pgserver, which the
// development stack uses too) with fsync off and max_connections=300; it is
// for tests only. The binaries are looked up on PATH, then in the newest
// /usr/lib/postgresql/*/bin (Debian package postgresql). PostgreSQL refuses
// to run as root: when the test runs as root, initdb and postgres run as the
// system user "postgres". When TEST_DATABASE_URL is set, databases are
// created on that server instead (it must allow CREATE DATABASE).
//
// PostgresEncoded(t, "SQL_ASCII") returns such a database created with
// another server encoding than UTF8.
//
// PostgresAs(t, owner) returns a fresh database on the same server for a
// fresh login role that is not superuser (nor CREATEDB, CREATEROLE or
// replication), as production runs the binaries: the database's owner, or
// with owner false a role that may only connect; IsSuperuser checks a URL.
//
// LockWaiters counts the sessions of a connection's own database waiting
// for a lock (by statement text and kind): a test that waits until its
// session waits for a lock must count that way, since another test's
// waiter, in another database of the shared server, is in pg_locks too.
//
// StartPostgres(t) starts a dedicated server for fault tests: Stop, Start and
// Restart keep its port and data directory, and CreateDatabase gives a
// database on it.
//
// initdb runs once per test binary, into a template data directory; every
// server (the shared one and each StartPostgres) starts from a copy of it,
// which takes a fraction of initdb's seconds on a busy machine.
//
// # Redis
//
// Redis(t) starts a dedicated redis-server (a few milliseconds) on a free
// loopback port and returns "127.0.0.1:port"; RedisURL(t) returns the same
// as a URL. StartRedis(t, RedisOptions{AppendOnly: true}) returns a
// *RedisServer whose data survives Stop/Start/Restart. When TEST_REDIS_URL is
// set, Redis and RedisURL use that server with DB indexes 1..15 handed out
// round robin and flushed at the start of each test; that gives isolation only
// through RedisURL (an address cannot name a DB index) and only for up to 15
// tests at a time. StartRedis always starts its own server.
//
// StartRedisCluster(t, RedisClusterOptions{}) starts a real Redis Cluster
// for one test: three masters and three replicas on free loopback ports
// (redisserver.StartCluster), stopped in t.Cleanup; URL gives its
// redis-cluster:// REDIS_URL, KillMasterOf and WaitHealthyT a failover. A
// cluster that cannot be made fails the test with the reason. With
// RedisClusterOptions{TLS: true} every node is TLS-only (cluster bus and
// replication too) with a new test CA's certificate (RedisCluster.TLSFiles),
// and URL is a rediss-cluster:// URL. StartRedis(t, RedisOptions{TLS: &files})
// starts a TLS-only server (WriteTLSFiles); its NewClient and TLSConfig
// trust the CA.
//
// # Redis hooks
//
// FailCommands fails the commands it is told to, as a Redis that refuses
// them would; CountCommands counts the commands a client sends, so a test
// can check that a call sent Redis nothing. Both are go-redis hooks
// (AddHook).
//
// # Binaries
//
// BuildBinary(t, "github.com/invoicing/tenantworker/cmd/worker") runs go build
// once per test binary and package and returns the executable's path.
// StartWithTeeGone starts one with its output on a pipe whose reader goes
// away once a given line came, as `| tee log` ended first by a Ctrl-C.
//
// # Processes, directories and ports
//
// Servers run in their own process group with a parent-death signal, so they
// die with the test binary even when it crashes. Stopping sends SIGINT
// (PostgreSQL fast shutdown) or SIGTERM (Redis), and SIGKILL to the group
// after five seconds.
//
// Server directories go to $TESTENV_TMPDIR when set, else to /dev/shm when it
// is writable (creating a database on tmpfs takes about 20ms instead of
// 65-300ms on disk), else to os.TempDir(). They are named
// testenv-<kind>-<pid>-*: a test binary that dies before Main's cleanup
// (panic, -timeout, kill) leaves its directories behind, and the next test
// binary that starts a server removes those whose owner process is gone.
// Built binaries go to os.TempDir(), because /dev/shm is often noexec.
//
// Free ports are found by listening on 127.0.0.1:0 and closing the listener;
// another process may take the port before the server binds it, so a start
// that fails with "address already in use" is retried once on a new port.
// Stop/Start/Restart keep the port, so a client's address stays valid.
//
// A test that needs a server which cannot be started fails with the reason
// and an install hint; nothing is skipped.
//
// # The real clock
//
// A test that runs the binaries on the real clock and counts what holds for
// one tenant day (at most one reminder per invoice a day, the scheduler's
// sweep reminding every overdue invoice again the next day) calls
// OneUTCDay(t, d) first: when the next UTC midnight comes within d, the
// longest the test runs, it waits until just past it, logging why.
package testenv
