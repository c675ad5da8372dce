package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/invoicing/tenantworker/internal/pgserver"
)

// database is the PostgreSQL the stack runs on: a throwaway server (srv
// set) or the one at Options.DatabaseURL (srv nil).
type database struct {
	url string
	srv *pgserver.Server
}

// dir is the throwaway server's directory; "" for an external database.
func (d *database) dir() string {
	if d.srv == nil {
		return ""
	}
	return d.srv.Dir()
}

// stop stops a throwaway server and removes its directory.
func (d *database) stop(ctx context.Context) error {
	if d.srv == nil {
		return nil
	}
	return d.srv.Stop(ctx)
}

// openDatabase returns the database at externalURL when it is set, or
// starts a throwaway server in a pgserver-* directory under dataDir (or
// under the system temp directory when the postgres system user cannot
// reach dataDir, which happens for root under /root) and creates
// DatabaseName on it. Directories left by earlier runs that were killed are
// removed first, from both places: a killed run that fell back leaves its
// directory in the temp directory.
func openDatabase(ctx context.Context, externalURL, dataDir string, logger *slog.Logger) (*database, error) {
	if externalURL != "" {
		logger.Info("using the database at DATABASE_URL; nothing will be removed at the end")
		return &database{url: externalURL}, nil
	}
	roots := []string{dataDir}
	if tmp, err := filepath.Abs(os.TempDir()); err == nil && tmp != dataDir {
		roots = append(roots, tmp)
	}
	for _, root := range roots {
		for _, dir := range pgserver.RemoveStale(root) {
			logger.Info("removed a database directory left by an earlier run", "dir", dir)
		}
	}
	opts := pgserver.Options{TempRoot: dataDir, Logger: logger}
	srv, err := pgserver.Start(ctx, opts)
	if errors.Is(err, pgserver.ErrDirUnreachable) {
		logger.Warn("the postgres system user cannot reach the data directory; putting the throwaway database under the system temp directory instead",
			"data_dir", dataDir, "temp_dir", os.TempDir(), "reason", err)
		opts.TempRoot = ""
		srv, err = pgserver.Start(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("throwaway postgres: the postgres system user cannot reach the data directory %s, and starting it under the temp directory %s failed too: %w (pass -data-dir a directory every user may traverse, or set TMPDIR to one)", dataDir, os.TempDir(), err)
		}
	}
	if err != nil {
		return nil, err
	}
	url, err := srv.CreateDatabase(ctx, DatabaseName)
	if err != nil {
		_ = srv.Stop(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("throwaway postgres: %w", err)
	}
	return &database{url: url, srv: srv}, nil
}
