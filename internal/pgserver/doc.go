// Package pgserver runs a throwaway PostgreSQL server from the local server
// binaries, for tests and for the embedded development stack
// (`worker -dev`). It is not for production databases.
//
// Start runs initdb into a fresh data directory and starts postgres on
// 127.0.0.1 (no Unix socket) with trust authentication and the superuser
// "postgres", then polls until it accepts connections:
//
//	srv, err := pgserver.Start(ctx, pgserver.Options{})
//	if err != nil { ... }
//	defer srv.Stop(context.WithoutCancel(ctx))
//	dbURL, err := srv.CreateDatabase(ctx, "app")
//
// # Binaries
//
// initdb and postgres are looked up on PATH, then in the newest
// /usr/lib/postgresql/<major>/bin (where Debian's postgresql package puts
// them; they are not on PATH there). When neither has them, Start returns
// ErrNotInstalled, whose message names the package to install.
//
// # Running as root
//
// PostgreSQL refuses to run as root. When the calling process is root,
// initdb and postgres run as the system user "postgres" (created by the
// Debian package), the data directory is chowned to it, and every directory
// above the server's directory must be traversable by it; Start checks that
// up front and returns an error wrapping ErrDirUnreachable otherwise.
//
// # Processes and directories
//
// The server runs in its own process group (a Ctrl-C on the terminal does
// not reach it; the owner decides when to stop it) and gets SIGKILL when the
// process that started it dies (parent-death signal), so it never outlives
// its owner. Stop sends SIGINT (fast shutdown: sessions are disconnected),
// waits up to five seconds or until ctx ends, then kills the process group.
//
// With Options.Dir empty, Start creates a temporary directory named
// pgserver-<pid>-* (under Options.TempRoot or os.TempDir()) and Stop removes
// it. A process killed before Stop leaves its directory behind, and its
// killed server its System V shared memory segment; RemoveStale removes
// such directories whose owner process is gone, with their segments.
//
// Options.Fsync false (the zero value) turns off fsync, synchronous_commit
// and full_page_writes: fast, and a machine crash loses the data, which is
// what a throwaway server is for.
package pgserver
