package placement

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

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
// not create schemas there, or its encoding is not UTF8), it is unusable (Unusable): Choose places no
// new tenant on it, one error line says so, and its tenants' work goes on
// as it would without the check (it fails where it needs the privilege).
// A check that could not run (its query failed: the connection dropped,
// ctx ended) stays due for the next connection. It never refuses conn.
// On a database found unusable it runs the check again instead, when its
// re-check is due (claimRecheck: at most once per
// Options.RecheckInterval, one at a time; recheck).
func (r *Registry) checkLate(ctx context.Context, name string, conn *pgx.Conn) {
	r.lateMu.Lock()
	c := r.pending[name]
	r.lateMu.Unlock()
	if c == nil {
		if r.claimRecheck(name) {
			r.recheck(ctx, name, conn)
		}
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
	case errors.Is(err, ErrMayNotCreateSchemas), errors.Is(err, ErrNotUTF8):
		r.failLate(ctx, name, err)
	default:
		r.log.WarnContext(ctx, "tenant database could not be checked on a new connection (TENANT_DATABASES): checked again on the next one",
			slog.String("database", name), slog.String("error", err.Error()))
	}
}

// failLate makes TENANT_DATABASES database name, whose check was due,
// unusable with err, and logs it once. It does nothing when the check was
// not due (it passed, failed already, or was never due). The database is
// checked again once Options.RecheckInterval has passed (claimRecheck).
func (r *Registry) failLate(ctx context.Context, name string, err error) {
	err = fmt.Errorf("TENANT_DATABASES: database %s: %w", name, err)
	r.lateMu.Lock()
	_, due := r.pending[name]
	if due {
		delete(r.pending, name)
		r.unusable[name] = err
		r.nextCheck[name] = time.Now().Add(r.recheckEvery)
	}
	r.lateMu.Unlock()
	if due {
		msg := "tenant database failed its check on its first connection (it was not reachable at start): no new tenant is placed on it until it passes the check again (made when it is used, at most every " +
			r.recheckEvery.String() + "); its tenants' work fails where it needs the privilege"
		if r.recheckEvery <= 0 {
			msg = "tenant database failed its check on its first connection (it was not reachable at start): no new tenant is placed on it until a restart after the fix; its tenants' work fails where it needs the privilege"
		}
		r.log.ErrorContext(ctx, msg, slog.String("database", name), slog.String("error", err.Error()))
	}
}

// claimRecheck reports whether the caller is to check database name
// again (recheck; Choose's recheckDue and checkCandidate): it is
// unusable, no other check of it runs, and Options.RecheckInterval has
// passed since it was found unusable or last checked. A true answer
// claims the check: the caller must end it with endRecheck (recheck
// does, also on a panic; recheckAt on every path).
func (r *Registry) claimRecheck(name string) bool {
	if r.recheckEvery <= 0 {
		return false
	}
	r.lateMu.Lock()
	defer r.lateMu.Unlock()
	if r.unusable[name] == nil || r.rechecking[name] || time.Now().Before(r.nextCheck[name]) {
		return false
	}
	r.rechecking[name] = true
	return true
}

// endRecheck ends the re-check of database name claimed by claimRecheck:
// passed (err nil), the database is usable again and one info line says
// so (passedAgain); otherwise it stays unusable, quietly (err, when the
// check ran and failed, replaces its reason), until the next re-check,
// one Options.RecheckInterval later.
func (r *Registry) endRecheck(ctx context.Context, name string, err error) {
	r.lateMu.Lock()
	delete(r.rechecking, name)
	r.nextCheck[name] = time.Now().Add(r.recheckEvery)
	if err != nil && (errors.Is(err, ErrMayNotCreateSchemas) || errors.Is(err, ErrRefused)) {
		r.unusable[name] = fmt.Errorf("TENANT_DATABASES: database %s: %w", name, err)
	}
	r.lateMu.Unlock()
	if err == nil {
		r.passedAgain(ctx, name)
	}
}

// passedAgain records that database name passed CheckDatabase's check
// just now, on a connection of its own (a re-check, endRecheck; a move's
// check of its target, CheckTarget): found unusable, it is usable again
// at once, and one info line says so; otherwise it does nothing (another
// check that passed at the same time said it already).
func (r *Registry) passedAgain(ctx context.Context, name string) {
	r.lateMu.Lock()
	was := r.unusable[name] != nil
	delete(r.unusable, name)
	delete(r.nextCheck, name)
	r.lateMu.Unlock()
	if was {
		r.log.InfoContext(ctx, "tenant database passed its check again (TENANT_DATABASES): its role may create schemas, new tenants are placed on it again",
			slog.String("database", name))
	}
}

// errRecheckCut: a re-check claimed by claimRecheck that ended without
// an outcome (a panic on its way): the database stays unusable, and is
// checked again one Options.RecheckInterval later.
var errRecheckCut = errors.New("re-check cut short")

// recheck runs the re-check claimed by claimRecheck on conn, a connection
// to database name, and ends it (endRecheck), also when the check panics.
func (r *Registry) recheck(ctx context.Context, name string, conn *pgx.Conn) {
	err := errRecheckCut
	defer func() { r.endRecheck(ctx, name, err) }()
	cctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	err = checkPrivileges(cctx, conn)
}

// recheckDue checks again, all at once, those of the databases names
// that are unusable and whose re-check is due (claimRecheck; recheckAt),
// and returns when each has ended: a provisioning request naming its
// database (Choose, usable) waits at most chooseTimeout for it. (By load,
// Choose re-checks its candidates with their other checks:
// checkCandidate.)
func (r *Registry) recheckDue(ctx context.Context, names ...string) {
	var wg sync.WaitGroup
	for _, name := range names {
		if r.claimRecheck(name) {
			wg.Go(func() { r.recheckAt(ctx, name) })
		}
	}
	wg.Wait()
}

// recheckAt runs the re-check of database name claimed by claimRecheck,
// within chooseTimeout, on a connection of its own (checkOwn, dialed as
// its pool dials, connConfig): not a pooled one, which may wait until the
// timeout while its tenants' work holds every connection of the pool (the
// re-check would then hold up the provisioning request and conclude
// nothing), or be one made before the server began refusing the login;
// and without opening the pool, which with Options.KeepConns would keep
// MaxConns connections to a database that takes no new tenant (as
// Choose's ping opens none). A server that still refuses the login, the
// database or the URL's TLS setting keeps it unusable. It ends the
// re-check (endRecheck) on every path, a panic included.
func (r *Registry) recheckAt(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(ctx, chooseTimeout)
	defer cancel()
	err := errRecheckCut
	defer func() { r.endRecheck(ctx, name, err) }()
	cfg, err := r.connConfig(ctx, name)
	if err != nil {
		return
	}
	err = checkOwn(ctx, cfg, false)
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
// tenant on them. Each error names the database and what fixes it. Each
// is checked again when it is used (Choose considering it, a new
// connection to it), at most once per Options.RecheckInterval, and leaves
// the list when it passes, or when a move's check of it passes
// (CheckTarget); a restart checks them again too.
func (r *Registry) Unusable() map[string]error {
	r.lateMu.Lock()
	defer r.lateMu.Unlock()
	return maps.Clone(r.unusable)
}
