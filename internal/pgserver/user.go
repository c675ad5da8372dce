package pgserver

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// serviceUserName is the system user PostgreSQL runs as when the caller is
// root.
const serviceUserName = "postgres"

// ErrDirUnreachable is wrapped by Start's error when the caller is root and
// the system user "postgres" cannot reach the server's directory (for
// example a directory under /root, which is mode 0700). Choose a directory
// under a world-traversable path such as os.TempDir().
var ErrDirUnreachable = errors.New("directory not reachable by the postgres system user")

// serviceUser is the user postgres runs as; nil means the current user.
type serviceUser struct {
	name string
	uid  int
	gid  int
}

// lookupServiceUser returns the user to run PostgreSQL as when running as
// root, or nil when not root.
func lookupServiceUser() (*serviceUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(serviceUserName)
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses to run as root: look up system user %q to run it as: %w (it is created by installing the Debian package postgresql)", serviceUserName, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("parse uid of user %q: %w", serviceUserName, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("parse gid of user %q: %w", serviceUserName, err)
	}
	return &serviceUser{name: serviceUserName, uid: uid, gid: gid}, nil
}

// credential returns the credential to start processes with (nil: the
// current user).
func (u *serviceUser) credential() *syscall.Credential {
	if u == nil {
		return nil
	}
	return &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)}
}

// chown gives path to the service user; a no-op when not running as root.
func (u *serviceUser) chown(path string) error {
	if u == nil {
		return nil
	}
	if err := os.Chown(path, u.uid, u.gid); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	return nil
}

// checkReachable checks that the service user may traverse dir and every
// directory above it; a no-op when not running as root. Supplementary
// groups are not considered, so the check may reject a path that would in
// fact work through one; it never accepts one that does not.
func (u *serviceUser) checkReachable(dir string) error {
	if u == nil {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", dir, err)
	}
	blocked, st, err := u.firstUntraversable(abs)
	if err != nil || blocked == "" {
		return err
	}
	hint := "use a directory that every user may traverse"
	if tmp := os.TempDir(); u.traversable(tmp) {
		hint = "use a directory under " + tmp
	}
	return fmt.Errorf("%w: %s (mode %s) is not traversable by user %q, which PostgreSQL runs as because it refuses to run as root; %s", ErrDirUnreachable, blocked, st.Mode().Perm(), u.name, hint)
}

// firstUntraversable returns the first directory, from abs up to the root,
// that the service user may not traverse, with its FileInfo; "" when there
// is none.
func (u *serviceUser) firstUntraversable(abs string) (string, os.FileInfo, error) {
	for p := abs; ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return "", nil, fmt.Errorf("stat %s: %w", p, err)
		}
		if !u.mayTraverse(st) {
			return p, st, nil
		}
		if p == filepath.Dir(p) {
			return "", nil, nil
		}
	}
}

// traversable reports whether the service user may reach dir: the advice
// of checkReachable's error must not name a directory it cannot reach
// either (TMPDIR under a private home directory).
func (u *serviceUser) traversable(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	p, _, err := u.firstUntraversable(abs)
	return err == nil && p == ""
}

// mayTraverse reports whether the execute bit that applies to the service
// user is set on a directory.
func (u *serviceUser) mayTraverse(st os.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return true // cannot tell; let initdb report it
	}
	perm := st.Mode().Perm()
	switch {
	case int(sys.Uid) == u.uid:
		return perm&0o100 != 0
	case int(sys.Gid) == u.gid:
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}
