package placement

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"

	"github.com/jackc/pgx/v5"
)

// errCheckDue: a TENANT_DATABASES database's late check has not concluded
// yet (lateOutcome).
var errCheckDue = errors.New("privileges not checked yet")

// lateCheck is the check still due of a TENANT_DATABASES database that
// CheckConfigured could not check at start.
type lateCheck struct {
	// sem is held while the check runs: connections made meanwhile wait
	// for its outcome (or their ctx) rather than run it again.
	sem chan struct{}
}

// checkLate runs CheckDatabase's privilege check on conn, a connection
// just made to TENANT_DATABASES database name, when that database's check
// is due: it could not be checked at start (CheckConfigured). It runs
// from every new connection of the database's pools (their AfterConnect,
// whatever path made it: a tenant's task, a request, Choose's ping) and
// concludes once, whichever of several connections made at once gets it
// first: passed, the database is used as any other; failed (the role may
// not create schemas there), it is unusable (Unusable): Choose places no
// new tenant on it, one error line says so, and its tenants' work goes on
// as it would without the check (it fails where it needs the privilege).
// A check that could not run (its query failed: the connection dropped,
// ctx ended) stays due for the next connection. It never refuses conn.
func (r *Registry) checkLate(ctx context.Context, name string, conn *pgx.Conn) {
	r.lateMu.Lock()
	c := r.pending[name]
	r.lateMu.Unlock()
	if c == nil {
		return
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-c.sem }()
	r.lateMu.Lock()
	due := r.pending[name] == c
	r.lateMu.Unlock()
	if !due {
		return // concluded while this one waited
	}
	cctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	err := checkPrivileges(cctx, conn)
	switch {
	case err == nil:
		r.lateMu.Lock()
		delete(r.pending, name)
		r.lateMu.Unlock()
		r.log.InfoContext(ctx, "tenant database checked on its first connection (TENANT_DATABASES): its role may create schemas",
			slog.String("database", name))
	case errors.Is(err, ErrMayNotCreateSchemas):
		r.failLate(ctx, name, err)
	default:
		r.log.WarnContext(ctx, "tenant database could not be checked on a new connection (TENANT_DATABASES): checked again on the next one",
			slog.String("database", name), slog.String("error", err.Error()))
	}
}

// failLate makes TENANT_DATABASES database name, whose check was due,
// unusable with err, and logs it once. It does nothing when the check was
// not due (it passed, failed already, or was never due).
func (r *Registry) failLate(ctx context.Context, name string, err error) {
	err = fmt.Errorf("TENANT_DATABASES: database %s: %w", name, err)
	r.lateMu.Lock()
	_, due := r.pending[name]
	if due {
		delete(r.pending, name)
		r.unusable[name] = err
	}
	r.lateMu.Unlock()
	if due {
		r.log.ErrorContext(ctx, "tenant database failed its check on its first connection (it was not reachable at start): no new tenant is placed on it until a restart after the fix; its tenants' work fails where it needs the privilege",
			slog.String("database", name), slog.String("error", err.Error()))
	}
}

// checkDue reports whether database name's late check is due.
func (r *Registry) checkDue(name string) bool {
	r.lateMu.Lock()
	defer r.lateMu.Unlock()
	return r.pending[name] != nil
}

// unusableErr is why database name is unusable (Unusable), or nil.
func (r *Registry) unusableErr(name string) error {
	r.lateMu.Lock()
	defer r.lateMu.Unlock()
	return r.unusable[name]
}

// lateOutcome is nil for a database whose late check passed or was never
// due, its error when it failed, and errCheckDue while it is due.
func (r *Registry) lateOutcome(name string) error {
	r.lateMu.Lock()
	defer r.lateMu.Unlock()
	if err := r.unusable[name]; err != nil {
		return err
	}
	if r.pending[name] != nil {
		return errCheckDue
	}
	return nil
}

// Unusable lists, by name, the TENANT_DATABASES databases that could not
// be checked at start (CheckConfigured) and failed their check on their
// first connection since: their role may not create schemas there, or
// their server refused the login or the database. Choose places no new
// tenant on them. Each error names the database and what fixes it; a
// restart checks them again.
func (r *Registry) Unusable() map[string]error {
	r.lateMu.Lock()
	defer r.lateMu.Unlock()
	return maps.Clone(r.unusable)
}
