package tenancy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// Audit actions of a move between tenant databases.
const (
	// ActionMoveStarted: a move began {from, to}.
	ActionMoveStarted Action = "tenant.move_started"
	// ActionMoved: the tenant's schema now lives in another database
	// {from, to, schema, version, tables, rows, old_schema_dropped, old_schema_written when writes reached the old schema after the copy}.
	ActionMoved Action = "tenant.moved"
	// ActionMoveFailed: a move failed and the tenant stayed where it was
	// {from, to, step}; the error goes to the log only.
	ActionMoveFailed Action = "tenant.move_failed"
)

// ErrMoveRefused: the tenant cannot be moved now (its status, the same
// database, no pool registry).
var ErrMoveRefused = errors.New("move refused")

// ErrMoveNotPropagated: a move switched the tenant's placement in the
// catalog, so the tenant lives on the target now, but the switch was not
// published to every process (Redis refused the invalidation): the move
// kept its queue paused and the old schema (unless its deletion was
// requested since). Not a failure that left the tenant where it was.
var ErrMoveNotPropagated = errors.New("switched, but not propagated to every process")

// ErrMoveOutcomeUnknown: the catalog did not say whether a move's switch
// was saved (its answer lost, and no answer to the checks after it): the
// tenant may live on either database; the move kept its queue paused and
// the schema in both.
var ErrMoveOutcomeUnknown = errors.New("the switch's outcome is unknown")

// MoveOptions tune Move; the zero value is usable.
type MoveOptions struct {
	// DrainTimeout bounds the wait for the tenant's running tasks after
	// its queue is paused; 0 means 5 minutes.
	DrainTimeout time.Duration
	// Grace is how long the old schema stays after the catalog switched,
	// for readers that still hold the old placement (other processes'
	// in-process cache); 0 means 3 s.
	Grace time.Duration
	// Poll is how often the running tasks are counted; 0 means 100 ms.
	Poll time.Duration
	// Progress, when set, is told what the move does as it starts each
	// step, and while it waits for running tasks, each change of their
	// number: a short lowercase phrase ("copy the schema ..."), for an
	// operator watching a long move.
	Progress func(step string)

	// beforeSwitch, set by tests, runs after the copy was verified and
	// before the catalog switches; an error fails the move there.
	beforeSwitch func(context.Context) error
}

// Moved is what Move did.
type Moved struct {
	TenantID string            `json:"tenant_id"`
	Slug     string            `json:"slug"`
	From     string            `json:"from"`
	To       string            `json:"to"`
	Schema   string            `json:"schema"`
	Version  int               `json:"version"`
	Tables   []schema.TableSum `json:"tables"`
	Rows     int64             `json:"rows"`
	Tenant   tenantctx.Tenant  `json:"-"`
	// OldSchemaDropped is false when dropping the source schema failed
	// after the switch: the tenant works on its new database, and the
	// old schema must be dropped by hand (the error is in the log).
	OldSchemaDropped bool `json:"old_schema_dropped"`
	// OldSchemaWritten lists the tables of the old schema that writes
	// reached after the copy (the transaction holding them against writes
	// was lost after the switch, in the grace period): the old schema is
	// kept, and holds rows the tenant's new database lacks.
	OldSchemaWritten []string `json:"old_schema_written,omitempty"`
}

// Move moves tenant id's schema with its rows to the tenant database to.
// It first takes the tenant's move lock (lockMove: another move of the
// tenant running is ErrMoveRefused) and releases a hold an interrupted
// move left (releaseInterruptedMove), also when it refuses the move after
// that (the tenant is there already, say). It then checks the target as
// `enqueue db add` does (placement.Registry.CheckTarget, on a connection
// of its own; passing, it makes a target found unusable usable again at
// once, placement.Registry.Unusable) and refuses a target whose role may
// not create schemas there, or whose server refuses the login or the
// database (ErrMoveRefused wrapping placement.ErrMayNotCreateSchemas or
// placement.ErrRefused), or fails for one that does not answer
// (placement.ErrUnreachable), before it changes anything: no audit entry,
// no hold. It records ActionMoveStarted, which a tenant's destroy reads
// to find the copies a killed move left, and goes no further when it
// cannot. Then it goes:
//
//  1. pause the tenant's queue (PauseQueue; with fair dispatch only) and
//     wait until none of its tasks is running or admitted;
//  2. copy the schema into the target database (schema.BeginCopy: the
//     source's tables locked against writes, which wait, from here to the
//     end; created by the migrations at the source's version, tables
//     copied with COPY, sequences set, row counts and checksums verified);
//  3. switch the tenant's placement in the catalog (the cache drops the
//     tenant everywhere), only from the database copied (a concurrent
//     move that switched first wins) and only onto the registration of
//     the target copied to (one removed, or removed and registered again
//     under its name, during the move is refused), and only while the
//     copy's source transaction still holds the tables (schema.Copied.Held:
//     one the server ended, its backend terminated or its connection lost,
//     let waiting writes into the source, which the copy lacks);
//  4. after Grace, drop the old schema in the transaction that locked it:
//     writes that waited fail instead of landing in it; that transaction
//     lost meanwhile, the old schema is dropped only if its tables still
//     hold what was copied, else kept, the tables written since named in
//     Moved.OldSchemaWritten (schema.SourceWrittenError);
//  5. resume the queue (unless an operator had paused it before, or
//     during the move: its pause stays, and no ActionQueueResumed is
//     written); a suspended tenant's work stays held by its suspension,
//     which the progress says, until the tenant is resumed.
//
// A failure in steps 1-3 leaves the tenant on its database, working: the
// partial copy is dropped and the queue resumed. A switch that was not
// propagated, or whose outcome is unknown, keeps the queue paused instead,
// as an operator's pause (keepQueuePaused: recorded, held and settled as
// PauseQueue does); of it and an operator's ResumeQueue that races it,
// the one that changed the first queue last wins, consistently in Redis
// and the catalog: a resume that ran before the move's hold (it had not
// seen the move's error yet) leaves the queue paused, as that error says.
// A tenant whose deletion was requested (before or while the pause is
// made) is not kept paused: its tenant:destroy runs (keepQueuePaused).
// It writes ActionMoveStarted, then ActionMoved or ActionMoveFailed. Errors:
// ErrMoveRefused (wrapping storage.ErrRegistrationChanged for a target
// registered again during the move), ErrMoveNotPropagated (switched: the
// tenant is on to), ErrMoveOutcomeUnknown, ErrNoDispatch,
// placement.ErrUnknownDatabase for a target that is not registered,
// schema.ErrSchemaExists when the target holds the schema already.
func (s *Service) Move(ctx context.Context, id, to, actor string, opts MoveOptions) (Moved, error) {
	opts.DrainTimeout = cmpOr(opts.DrainTimeout, 5*time.Minute)
	opts.Grace = cmpOr(opts.Grace, 3*time.Second)
	opts.Poll = cmpOr(opts.Poll, 100*time.Millisecond)
	if s.pools == nil {
		return Moved{}, fmt.Errorf("move tenant %s: %w: no pool registry", id, ErrMoveRefused)
	}
	t, err := s.dispatchTenant(ctx, id)
	if err != nil {
		return Moved{}, fmt.Errorf("move tenant: %w", err)
	}
	from := t.DatabaseName()
	m := Moved{TenantID: t.ID, Slug: t.Slug, From: from, To: to, Schema: t.Schema, Tenant: t}
	unlock, err := s.lockMove(ctx, id)
	if err != nil {
		return m, err
	}
	defer unlock()
	if _, err := s.releaseInterruptedMove(ctx, id, opts); err != nil {
		return m, fmt.Errorf("move tenant %s: %w", id, err)
	}
	switch {
	case t.Status != tenantctx.StatusActive && t.Status != tenantctx.StatusSuspended:
		return m, fmt.Errorf("move tenant %s: %w: status %s", id, ErrMoveRefused, t.Status)
	case to == from:
		return m, fmt.Errorf("move tenant %s: %w: it is on %s already", id, ErrMoveRefused, to)
	}
	if err := tenantctx.ValidateDatabaseName(to); err != nil {
		return m, fmt.Errorf("move tenant %s: %w", id, err)
	}
	src, err := s.pools.SchemaPool(ctx, from)
	if err != nil {
		return m, fmt.Errorf("move tenant %s: source: %w", id, err)
	}
	// The target's registration is recorded with its pool: the switch
	// happens only while to is still the registration copied to. (The
	// source's cannot change: a database holding a tenant cannot be
	// removed, and the switch happens only from it.)
	dst, toGeneration, err := s.pools.SchemaPoolRegistration(ctx, to)
	if err != nil {
		return m, fmt.Errorf("move tenant %s: target: %w", id, err)
	}
	// The target is checked as `enqueue db add` checks a database
	// (placement.Registry.CheckTarget) before anything changes: a role
	// that may not create schemas there, or a server that refuses the
	// login, would fail the copy only after the queue was paused; one
	// that does not answer fails it too.
	if err := s.pools.CheckTarget(ctx, to, dst); err != nil {
		if errors.Is(err, placement.ErrMayNotCreateSchemas) || errors.Is(err, placement.ErrRefused) {
			err = fmt.Errorf("%w: %w", ErrMoveRefused, err)
		}
		return m, fmt.Errorf("move tenant %s: target database %s: %w", id, to, err)
	}

	// Recorded before anything changes, or the move does not go on: a
	// tenant's destroy finds the copies a killed move left by the
	// databases these entries name (dropMoveCopies), and a move killed
	// after its copy without one would leave a whole copy that no
	// erasure reaches.
	if err := s.audit(ctx, id, actor, ActionMoveStarted, map[string]string{"from": from, "to": to}); err != nil {
		return m, fmt.Errorf("move tenant %s: record its start: %w", id, err)
	}
	// What ends the move (its closing audit entry, the release of the
	// source's transaction when the switch was not propagated, the resume
	// of its queue) runs past ctx's end but is bounded as a saved change's
	// completion is (completing, from its first use): a catalog or Redis
	// that answers nothing then (a frozen server) must not keep the move
	// waiting for ever, its queue held. Not so the entry and the pause of
	// a move that keeps its queue paused: the workers' stale-move check
	// keeps the hold only by them (keepMovePaused), so they are waited for.
	var endCtx context.Context
	endCancel := context.CancelFunc(func() {})
	defer func() { endCancel() }() // after the queue's release below
	ending := func() context.Context {
		if endCtx == nil {
			endCtx, endCancel = completing(ctx)
		}
		return endCtx
	}
	fail := func(step string, err error) (Moved, error) {
		// The error stays out of the audit entry: a database error may
		// quote row data.
		s.logger.WarnContext(ctx, "tenant move failed; the tenant stays where it was", slog.String("tenant_id", id),
			slog.String("from", from), slog.String("to", to), slog.String("step", step), slog.String("error", err.Error()))
		s.logFailure(ctx, id, ActionMoveFailed, s.audit(ending(), id, actor, ActionMoveFailed,
			map[string]string{"from": from, "to": to, "step": step}))
		return m, fmt.Errorf("move tenant %s from %s to %s: %s: %w", id, from, to, step, err)
	}

	// 1. Quiesce the tenant: a hold of its own (fair.Moving), apart from
	// an operator's pause, which a pause or resume during the move neither
	// lifts nor is lifted by.
	keepPaused := false // the switch was not propagated: resuming would run tasks on the old database
	opts.progress("pause the queue of tenant %s (%s)", t.Slug, id)
	if _, err := s.liveDispatchTenant(ctx, id, "pause"); err != nil {
		return fail("pause", err)
	}
	movedBack, err := s.fair.Hold(ctx, id, fair.Moving, s.holdQueues(id)...)
	if err != nil {
		return fail("pause", err)
	}
	defer func() {
		rctx := ending()
		if keepPaused {
			rctx = context.WithoutCancel(ctx)
			opts.progress("keep the queue paused")
			// Handed over to an operator's pause, which ResumeQueue lifts.
			// A resume racing the hand-over was not told of this move's
			// outcome (its error comes after): the pause wins unless the
			// resume released it after it was made (keepQueuePaused).
			paused, err := s.keepQueuePaused(rctx, id)
			switch {
			case errors.Is(err, ErrRefused):
				// The tenant's deletion was requested: its queue runs, so
				// that its tenant:destroy does.
				opts.progress("resume the queue: the tenant's deletion was requested, and its destroy runs in it")
				s.logger.WarnContext(ctx, "the tenant's deletion was requested: its queue is not kept paused after the move, so that its destroy runs",
					slog.String("tenant_id", id), slog.String("error", err.Error()))
			case err != nil:
				// The move's own hold stays: the workers' stale-move
				// check hands it over (keepMovePaused).
				s.logger.ErrorContext(ctx, "keep the queue paused after a move", slog.String("tenant_id", id), slog.String("error", err.Error()))
				return
			case !paused:
				s.logger.WarnContext(ctx, "an operator resumed the queue as the move paused it: it runs, although the move's switch was not propagated or its outcome is unknown",
					slog.String("tenant_id", id))
			default:
				s.recordKeptPause(rctx, id, actor)
			}
		}
		// An operator's pause, made before the move or during it, stays:
		// only the move's hold goes, and the queue does not run, which
		// neither the progress nor the audit log may then say it does.
		// Nor does a suspended tenant's ordinary work, which its
		// suspension holds until the tenant is resumed.
		operatorPaused := false
		if !keepPaused {
			var stays []string
			if held, err := s.fair.HeldFor(rctx, id, fair.Paused, s.holdQueues(id)[0]); err == nil && held {
				operatorPaused = true
				stays = append(stays, "the queue stays paused, as an operator paused it (queue/resume lifts that)")
			}
			if held, err := s.fair.HeldFor(rctx, id, fair.Suspended, s.suspendQueues(id)[0]); err == nil && held {
				stays = append(stays, "the tenant's work stays held, as the tenant is suspended (POST /admin/tenants/"+id+"/resume lifts that)")
			}
			if len(stays) > 0 {
				opts.progress("release the move's hold: %s", strings.Join(stays, "; "))
			} else {
				opts.progress("resume the queue")
			}
		}
		if _, err := s.fair.Release(rctx, id, fair.Moving, s.holdQueues(id)...); err != nil {
			s.logger.ErrorContext(ctx, "resume the queue after a move", slog.String("tenant_id", id), slog.String("error", err.Error()))
			return
		}
		if !keepPaused && !operatorPaused {
			s.logFailure(rctx, id, ActionQueueResumed, s.audit(rctx, id, actor, ActionQueueResumed, map[string]string{}))
		}
	}()
	if err := s.deletedMeanwhile(ctx, id, "pause"); err != nil {
		return fail("pause", err)
	}
	s.logFailure(ctx, id, ActionQueuePaused, s.audit(ctx, id, actor, ActionQueuePaused, map[string]int{"moved_back": movedBack}))
	if err := s.waitIdle(ctx, id, opts); err != nil {
		return fail("wait for running tasks", err)
	}

	// 2. Copy and verify. From here until the copy ends, the source's
	// tables take no writes (they wait): what was copied stays what the
	// source holds.
	opts.progress("copy the schema %s from %s to %s and verify it (writes to the tenant wait until the move ends)", t.Schema, from, to)
	own, err := ownConnection(ctx, src)
	if err != nil {
		return fail("copy", err)
	}
	// Closed once the copy's source transaction ended (every path below
	// ends it: DropSource, Release or Abort).
	defer own.Close()
	c, err := schema.BeginCopy(ctx, own, dst, t.Schema)
	if err != nil {
		return fail("copy", err)
	}
	m.Version, m.Tables, m.Rows = c.Result.Version, c.Result.Tables, c.Result.Rows()
	dropCopy := func(err error) error {
		if aerr := c.Abort(context.WithoutCancel(ctx)); aerr != nil {
			return errors.Join(err, fmt.Errorf("drop the copy in %s: %w", to, aerr))
		}
		return err
	}
	opts.progress("copied and verified %d tables, %d rows; switch the tenant to %s", len(m.Tables), m.Rows, to)
	if opts.beforeSwitch != nil {
		if err := opts.beforeSwitch(ctx); err != nil {
			return fail("switch", dropCopy(err))
		}
	}

	// The source's transaction must still hold the tables: ended by the
	// server (its backend terminated, a restart, a lost connection), it
	// let writes that waited commit into the source, and the copy lacks
	// them.
	if err := c.Held(ctx); err != nil {
		opts.progress("drop the copy in %s", to)
		return fail("switch", dropCopy(err))
	}

	// 3. Switch, unless the tenant's deletion was requested meanwhile (its
	// destroy then runs where it is), another move switched it first, or
	// the target was removed, or removed and registered again (on another
	// server, say), since its pool was resolved: SetPlacement changes only
	// a running tenant still on from, onto the registration copied to.
	// Either way the copy goes.
	// The switch ends by the bound of its settling (settlePlacement) too:
	// a catalog that answers nothing (a frozen server) must not keep the
	// move waiting for ever, the tenant's tables locked and its queue
	// paused; cut, its outcome is unknown and settled as a lost answer's.
	sctx, scancel := context.WithTimeout(ctx, min(opts.DrainTimeout, 30*time.Second))
	moved, err := s.catalog.SetPlacement(sctx, id, from, to, toGeneration)
	scancel()
	if err != nil && !placementAnswered(err) {
		// The answer was lost (a broken connection, the context's end
		// after the commit): the switch may be saved, and dropping the
		// copy would leave the tenant placed on a database without its
		// schema. Ask the catalog until it answers.
		moved, err = s.settlePlacement(ctx, id, from, to, toGeneration, opts)
		if errors.Is(err, ErrMoveOutcomeUnknown) {
			keepPaused = true
			if rerr := c.Release(ending()); rerr != nil {
				s.logger.ErrorContext(ctx, "release the old schema after a move", slog.String("tenant_id", id), slog.String("error", rerr.Error()))
			}
			s.logger.ErrorContext(ctx, "tenant move: the catalog did not say whether the switch was saved; its queue stays paused and both schemas are kept",
				slog.String("tenant_id", id), slog.String("from", from), slog.String("to", to), slog.String("error", err.Error()))
			s.logFailure(ctx, id, ActionMoveFailed, s.audit(context.WithoutCancel(ctx), id, actor, ActionMoveFailed,
				map[string]string{"from": from, "to": to, "step": stepSwitchUnknown}))
			return m, fmt.Errorf("move tenant %s from %s to %s: %w: its queue stays paused and the schema is kept in both databases; "+
				"once the catalog answers, see where it places the tenant (enqueue db list, GET /admin/tenants/%s), drop the schema %s in the other database, then resume the queue",
				id, from, to, err, id, t.Schema)
		}
	}
	if errors.Is(err, storage.ErrInvalidTransition) || errors.Is(err, storage.ErrPlacementChanged) ||
		errors.Is(err, storage.ErrRegistrationChanged) {
		err = fmt.Errorf("%w: %w", ErrMoveRefused, err)
	}
	if errors.Is(err, storage.ErrInvalidationFailed) {
		// Switched, but other processes may still reach the old database
		// from their caches: try to publish it again while nothing runs.
		err = s.propagatePlacement(ctx, id, to, toGeneration, opts)
		if err != nil {
			keepPaused = true
			m.Tenant = moved
			if rerr := c.Release(ending()); rerr != nil {
				s.logger.ErrorContext(ctx, "release the old schema after a move", slog.String("tenant_id", id), slog.String("error", rerr.Error()))
			}
			s.logger.ErrorContext(ctx, "tenant moved but the switch was not propagated: its queue stays paused and the old schema is kept",
				slog.String("tenant_id", id), slog.String("from", from), slog.String("to", to), slog.String("error", err.Error()))
			// The tenant lives on to now: the move's closing entry says so,
			// and what is left for the operator.
			detail := map[string]any{"from": from, "to": to, "schema": t.Schema, "version": m.Version,
				"tables": len(m.Tables), "rows": m.Rows, "old_schema_dropped": false, "propagated": false}
			s.logFailure(ctx, id, ActionMoved, s.audit(context.WithoutCancel(ctx), id, actor, ActionMoved, detail))
			if errors.Is(err, storage.ErrInvalidTransition) {
				// Its deletion was requested since the switch: the queue
				// is not kept paused (keepQueuePaused), so that its
				// destroy erases it on to.
				return m, fmt.Errorf("move tenant %s from %s to %s: %w, and its deletion was requested since (%w): "+
					"its queue is not kept paused, so that its destroy runs on %s (it drops schema %s in %s too)",
					id, from, to, ErrMoveNotPropagated, err, to, t.Schema, from)
			}
			return m, fmt.Errorf("move tenant %s from %s to %s: %w (%w): "+
				"its queue stays paused and the old schema is kept; once Redis works, resume the queue after the tenant cache's Redis TTL, then drop schema %s in %s",
				id, from, to, ErrMoveNotPropagated, err, t.Schema, from)
		}
	}
	if err != nil {
		opts.progress("drop the copy in %s", to)
		return fail("switch", dropCopy(err))
	}
	m.Tenant = moved

	// 4. Drop the old schema, after the grace period, in the transaction
	// that kept its tables from taking writes: a write that waited fails
	// then (its tables are gone) rather than landing where nobody reads.
	opts.progress("switched to %s; keep the old schema %v for processes that still read it there", to, opts.Grace)
	select {
	case <-time.After(opts.Grace):
	case <-ctx.Done():
	}
	opts.progress("drop the old schema %s in %s", t.Schema, from)
	// A source transaction lost in the grace period let the writes that
	// waited commit into the old schema: DropSource drops it only if its
	// tables still hold what was copied, and names those written since.
	var written *schema.SourceWrittenError
	switch err := c.DropSource(context.WithoutCancel(ctx)); {
	case errors.As(err, &written):
		m.OldSchemaWritten = written.Tables
		s.logger.ErrorContext(ctx, "tenant move: writes reached the old schema after the switch (the transaction holding its tables was lost): it is kept; "+
			"copy the rows the tenant's new database lacks from those tables into it, then drop the old schema",
			slog.String("tenant_id", id), slog.String("database", from), slog.String("schema", t.Schema),
			slog.String("tables", strings.Join(written.Tables, ", ")), slog.String("error", err.Error()))
	case err != nil:
		s.logger.ErrorContext(ctx, "drop the old schema after a move: drop it by hand",
			slog.String("tenant_id", id), slog.String("database", from), slog.String("schema", t.Schema), slog.String("error", err.Error()))
	default:
		m.OldSchemaDropped = true
	}
	detail := map[string]any{"from": from, "to": to, "schema": t.Schema, "version": m.Version,
		"tables": len(m.Tables), "rows": m.Rows, "old_schema_dropped": m.OldSchemaDropped}
	if len(m.OldSchemaWritten) > 0 {
		detail["old_schema_written"] = m.OldSchemaWritten
	}
	s.logFailure(ctx, id, ActionMoved, s.audit(ending(), id, actor, ActionMoved, detail))
	return m, nil
}

// ownConnection returns a pool of one connection, made with src's
// configuration (its pinning and release checks included), for the copy's
// source transaction. That transaction is held from the copy until the old
// schema is dropped, across the switch and the audit entries, which take
// connections of the catalog's pool: on "main" without
// MIGRATIONS_DATABASE_URL that is src itself, and on a pool of one
// connection (DB_MAX_CONNS=1) the switch would wait for ever for the one
// the move holds, the tenant's tables locked meanwhile. Like the move
// lock's connection (lockMove), it comes beside the pool, not from it.
func ownConnection(ctx context.Context, src *pgxpool.Pool) (*pgxpool.Pool, error) {
	cfg := src.Config()
	cfg.MaxConns, cfg.MinConns, cfg.MinIdleConns = 1, 0, 0
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open the source's connection: %w", err)
	}
	return p, nil
}

// placementAnswered reports whether err, returned by SetPlacement, says
// what the catalog holds: the switch saved (ErrInvalidationFailed) or not
// made (a refusal). Any other error may have come after the commit.
func placementAnswered(err error) bool {
	for _, known := range []error{storage.ErrInvalidationFailed, storage.ErrInvalidTransition,
		storage.ErrPlacementChanged, storage.ErrRegistrationChanged, storage.ErrNotFound} {
		if errors.Is(err, known) {
			return true
		}
	}
	return false
}

// settlePlacement finds out whether a switch of tenant id from from to to
// whose answer was lost was saved, and makes it if not: the
// tenant's placement saved again on to (nothing changes if it is there,
// and the change is published), or, if it is not on to, the switch tried
// again. It asks until the catalog answers, for up to opts.DrainTimeout or
// 30 s, whichever is shorter, then returns ErrMoveOutcomeUnknown.
func (s *Service) settlePlacement(ctx context.Context, id, from, to string, generation int64, opts MoveOptions) (tenantctx.Tenant, error) {
	deadline := time.Now().Add(min(opts.DrainTimeout, 30*time.Second))
	// Each attempt ends by the deadline too: a catalog that answers
	// nothing (a frozen server, a pool whose connections are all held)
	// must not keep the move waiting, the tenant's tables locked, past it.
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	for {
		t, err := s.catalog.SetPlacement(ctx, id, to, to, generation)
		if errors.Is(err, storage.ErrInvalidTransition) {
			// On to (the placement is compared first), but its deletion
			// was requested since: the switch was saved, and the destroy
			// runs there.
			if cur, lerr := s.catalog.TenantByID(ctx, id); lerr == nil && cur.DatabaseName() == to {
				return cur, nil
			}
		}
		if errors.Is(err, storage.ErrPlacementChanged) {
			// Not on to: the first attempt changed nothing.
			t, err = s.catalog.SetPlacement(ctx, id, from, to, generation)
		}
		if err == nil || placementAnswered(err) {
			return t, err
		}
		if time.Now().After(deadline) {
			return t, fmt.Errorf("%w: %w", ErrMoveOutcomeUnknown, err)
		}
		time.Sleep(opts.Poll * 5)
	}
}

// propagatePlacement saves the tenant's placement again (the same value)
// until its cache invalidation is published, for up to opts.DrainTimeout
// or 30 s, whichever is shorter; each attempt ends by then too.
func (s *Service) propagatePlacement(ctx context.Context, id, to string, generation int64, opts MoveOptions) error {
	deadline := time.Now().Add(min(opts.DrainTimeout, 30*time.Second))
	// A catalog that answers nothing (a frozen server, a lost connection)
	// must not keep the move waiting past the deadline, the tenant's
	// tables locked and its queue paused: the move then ends as one whose
	// switch was not propagated.
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var last error
	for {
		_, err := s.catalog.SetPlacement(ctx, id, to, to, generation)
		if err == nil || !errors.Is(err, storage.ErrInvalidationFailed) || time.Now().After(deadline) {
			if err != nil && last != nil && !errors.Is(err, storage.ErrInvalidationFailed) {
				err = errors.Join(last, err)
			}
			return err
		}
		last = err
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(opts.Poll * 5):
		}
	}
}

// waitIdle waits until none of the tenant's tasks is running or admitted
// (its queue is paused, so none starts).
func (s *Service) waitIdle(ctx context.Context, id string, opts MoveOptions) error {
	deadline := time.Now().Add(opts.DrainTimeout)
	reported := -1
	for {
		stats, err := s.fair.Stats(ctx, id, s.layout().TenantQueues(id)...)
		if err != nil {
			return err
		}
		busy := 0
		for _, st := range stats {
			busy += max(st.Running, st.Admitted) // admitted tasks include the running ones
		}
		if busy == 0 {
			return nil
		}
		if busy != reported {
			opts.progress("wait for %d running tasks of the tenant (at most %v)", busy, opts.DrainTimeout)
			reported = busy
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d tasks still running after %v", busy, opts.DrainTimeout)
		}
		select {
		case <-time.After(opts.Poll):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// moveLockNamespace is the first key of the advisory lock a move of a
// tenant holds in the catalog's database while it runs (the second is
// hashtext(tenant id)); it spells "move" in ASCII.
const moveLockNamespace int32 = 0x6d6f7665

// unlockTimeout bounds the end of the move lock's transaction; cut, its
// connection is closed and the lock goes with its session.
const unlockTimeout = 5 * time.Second

// lockMove takes tenant id's move lock on a connection of its own and
// returns its release. Another move of the tenant running (from any
// process) is ErrMoveRefused. The lock goes with its connection, so a
// move whose process died (kill -9, a second Ctrl-C, a lost machine) holds
// it no longer, and the next move knows its hold is stale. The connection
// is opened with the schema pool's configuration, not taken from the
// pool: held for the whole move, it would take one of the connections the
// copy and the switch need, and on a small pool the move would wait for
// ever for the one it holds.
//
// The lock is a transaction-level one (pg_try_advisory_xact_lock) in a
// transaction left open until the release, not a session-level one: the
// schema pool may go through PgBouncer in transaction pooling mode
// (MIGRATIONS_DATABASE_URL defaults to DATABASE_URL), which hands the
// server connection to other clients between transactions, and a
// session-level lock would stay on it with whichever client ran the
// statement next (re-entrant there: a second move, or the workers' check
// for stale holds, would take it too), while an open transaction keeps
// its server connection to itself. The transaction runs at read committed
// whatever the database's default_transaction_isolation, takes no snapshot
// between statements and writes nothing, and lifts the server's
// idle_in_transaction_session_timeout for itself, so a long move is not
// cut off by it.
func (s *Service) lockMove(ctx context.Context, id string) (unlock func(), err error) {
	if s.pool == nil {
		return nil, fmt.Errorf("move tenant %s: %w: no schema pool", id, ErrMoveRefused)
	}
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("move tenant %s: lock: %w", id, err)
	}
	rctx := context.WithoutCancel(ctx)
	var ok bool
	// At read committed whatever the database's
	// default_transaction_isolation: at repeatable read or serializable
	// the lock statement's snapshot would be the transaction's, kept
	// until it ends.
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err == nil {
		_, err = tx.Exec(ctx, "SET LOCAL idle_in_transaction_session_timeout = 0")
	}
	if err == nil {
		// The simple protocol: a statement of the extended one leaves the
		// idle transaction's backend_xmin set, holding the database's
		// VACUUM horizon for the whole move.
		err = tx.QueryRow(ctx, "SELECT pg_catalog.pg_try_advisory_xact_lock($1::int4, pg_catalog.hashtext($2))",
			pgx.QueryExecModeSimpleProtocol, moveLockNamespace, id).Scan(&ok)
	}
	if err != nil || !ok {
		_ = conn.Close(rctx)
		if err != nil {
			return nil, fmt.Errorf("move tenant %s: lock: %w", id, err)
		}
		return nil, fmt.Errorf("move tenant %s: %w: another move of the tenant is running", id, ErrMoveRefused)
	}
	return func() {
		// Ended first, so that a move right after this one finds the
		// lock free (a closed connection's backend lets it go only as it
		// exits); closed, the connection takes it with it anyway, so a
		// catalog that answers nothing (a frozen server) is not waited
		// for past unlockTimeout.
		uctx, cancel := context.WithTimeout(rctx, unlockTimeout)
		defer cancel()
		_ = tx.Rollback(uctx)
		_ = conn.Close(uctx)
	}, nil
}

// releaseInterruptedMove lifts a move's hold on tenant id's queue that
// no move holds any more (the caller holds the move lock): one left by a
// move whose process died before it could resume the queue, which
// neither an operator's resume nor a tenant's resume lifts. It reports
// whether there was such a hold.
func (s *Service) releaseInterruptedMove(ctx context.Context, id string, opts MoveOptions) (bool, error) {
	if s.fair == nil {
		return false, nil
	}
	stats, err := s.fair.Stats(ctx, id, s.layout().Queues()...)
	if err != nil {
		return false, fmt.Errorf("look for the hold of an interrupted move: %w", err)
	}
	if !slices.ContainsFunc(stats, func(st fair.QueueStats) bool { return st.Moving }) {
		return false, nil
	}
	opts.progress("release the hold an interrupted move left on the tenant's queue")
	s.logger.WarnContext(ctx, "releasing the hold of an interrupted tenant move", slog.String("tenant_id", id))
	if _, err := s.fair.Release(ctx, id, fair.Moving, s.holdQueues(id)...); err != nil {
		return false, fmt.Errorf("release the hold of an interrupted move: %w", err)
	}
	return true, nil
}

// ReleaseStaleMoves lifts the holds of moves whose process died (kill -9,
// a lost machine) without waiting for the next move of their tenant: for
// each tenant whose queue a move holds (fair.Moving), it takes the
// tenant's move lock, which PostgreSQL let go with the dead move's
// session, and releases the hold under it as the next move would
// (releaseInterruptedMove), logging each tenant_id. A move that is alive
// holds its lock, so its hold stays; holds of a suspension or an
// operator's pause are never touched. A move that meant to leave the
// queue paused (its switch not propagated, or its outcome unknown, as its
// audit entry says) but died or could not reach Redis to say so has its
// hold handed over to an operator's pause instead (keepMovePaused), unless
// the tenant is being deleted. While it holds a tenant's lock (a
// few milliseconds) a move of that tenant starting is refused as if
// another move ran. It returns the tenants whose hold it released; an
// error of one tenant does not stop the others. Without fair dispatch it
// does nothing.
func (s *Service) ReleaseStaleMoves(ctx context.Context) ([]string, error) {
	if s.fair == nil {
		return nil, nil
	}
	held, err := s.fair.Held(ctx, fair.Moving, s.layout().Queues()...)
	if err != nil {
		return nil, fmt.Errorf("release stale moves: %w", err)
	}
	var released []string
	var errs []error
	for _, id := range held {
		unlock, err := s.lockMove(ctx, id)
		if errors.Is(err, ErrMoveRefused) {
			continue // a move of the tenant runs: its hold is live
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		kept, err := s.keepMovePaused(ctx, id)
		if err != nil || kept {
			unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("tenant %s: %w", id, err))
			}
			continue
		}
		freed, err := s.releaseInterruptedMove(ctx, id, MoveOptions{})
		unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", id, err))
			continue
		}
		if freed {
			released = append(released, id)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return released, fmt.Errorf("release stale moves: %w", err)
	}
	return released, nil
}

// keepMovePaused hands the hold of tenant id's last move over to an
// operator's pause (fair.Paused, which ResumeQueue lifts) when that move
// meant to leave the queue paused (its switch was not propagated, or its
// outcome is unknown: other processes may still reach the old database)
// but could not say so in Redis, and reports whether it did. An
// operator's resume of the queue since that move (ActionQueueResumed, as
// the move's error asks once Redis works, with no ActionQueuePaused after
// it) stands: the hold is not kept. So does one that ran while the pause
// was being made: its entry is read again after the pause is settled
// (keepQueuePaused), and if it is there the pause is lifted again, so the
// queue runs, unrecorded, as the resume answered. A resume still under way
// then (its entry is written after its release and settle) is not seen:
// it is settled with the pause as racing calls are (settlePause, the later
// change to the first queue wins), and if its release came before the
// pause's hold the queue stays paused, recorded, and the operator resumes
// it again. Nor is the hold kept for a tenant being deleted, also when its
// deletion is requested while the pause is being made (keepQueuePaused
// refuses it, or lifts the pause again): its tenant:destroy must run. The
// caller holds the tenant's move lock.
func (s *Service) keepMovePaused(ctx context.Context, id string) (bool, error) {
	last, resumed, err := s.lastMove(ctx, id)
	if err != nil {
		return false, err
	}
	if resumed {
		return false, nil
	}
	var detail struct {
		Propagated *bool  `json:"propagated"`
		Step       string `json:"step"`
	}
	if len(last.Detail) > 0 {
		if err := json.Unmarshal(last.Detail, &detail); err != nil {
			return false, fmt.Errorf("read the last move: %w", err)
		}
	}
	leftPaused := (last.Action == string(ActionMoved) && detail.Propagated != nil && !*detail.Propagated) ||
		(last.Action == string(ActionMoveFailed) && detail.Step == stepSwitchUnknown)
	if !leftPaused {
		return false, nil
	}
	stats, err := s.fair.Stats(ctx, id, s.layout().Queues()...)
	if err != nil {
		return false, fmt.Errorf("look for the hold of an interrupted move: %w", err)
	}
	if !slices.ContainsFunc(stats, func(st fair.QueueStats) bool { return st.Moving }) {
		return false, nil
	}
	if _, err := s.keepQueuePaused(ctx, id); err != nil {
		if errors.Is(err, ErrRefused) {
			// Being deleted: no pause was kept (or it was lifted again),
			// and the move's hold goes as an interrupted move's does (the
			// caller), so that the tenant's destroy runs.
			s.logger.WarnContext(ctx, "the tenant's deletion was requested: the last move's hold is not kept as an operator's pause, so that its destroy runs",
				slog.String("tenant_id", id), slog.String("error", err.Error()))
			return false, nil
		}
		return false, fmt.Errorf("keep the queue paused after a move: %w", err)
	}
	// A resume that ran while the pause was being made (after the
	// audit's read above) stands too: it may have found no pause to
	// release and have lost to it. Its entry is read again and, if it
	// is there, the pause is lifted as it would have been; the move's
	// hold then goes as an interrupted move's does (the caller).
	if _, resumed, err := s.lastMove(ctx, id); err != nil || resumed {
		if err != nil {
			return false, fmt.Errorf("keep the queue paused after a move: %w", err)
		}
		s.logger.WarnContext(ctx, "an operator resumed the queue as the last move's hold was handed over to an operator's pause: the resume stands",
			slog.String("tenant_id", id))
		if _, err := s.fair.Release(ctx, id, fair.Paused, s.holdQueues(id)...); err != nil {
			return false, fmt.Errorf("keep the queue paused after a move: lift it again: %w", err)
		}
		if err := s.settlePause(ctx, id); err != nil {
			return false, fmt.Errorf("keep the queue paused after a move: lift it again: %w", err)
		}
		return false, nil
	}
	if _, err := s.fair.Release(ctx, id, fair.Moving, s.holdQueues(id)...); err != nil {
		return false, fmt.Errorf("keep the queue paused after a move: %w", err)
	}
	s.logger.WarnContext(ctx, "the last move of the tenant left its queue paused (its switch was not propagated or its outcome is unknown): its hold stays as an operator's pause; resume the queue once it is safe",
		slog.String("tenant_id", id))
	s.recordKeptPause(ctx, id, ActorWorker)
	return true, nil
}

// recordKeptPause writes the ActionQueuePaused entry of a move's hold
// handed over to an operator's pause (detail kept_after_move), once the
// hand-over is settled and kept: the audit log then ends in the pause the
// queue is in, also when an operator's resume raced the hand-over and lost
// (its entry came first). It is written last, after keepMovePaused has
// read the log for a resume, which it would otherwise hide (lastMove: a
// pause after a resume cancels it).
func (s *Service) recordKeptPause(ctx context.Context, id, actor string) {
	s.logFailure(ctx, id, ActionQueuePaused, s.audit(ctx, id, actor, ActionQueuePaused, map[string]bool{"kept_after_move": true}))
}

// keepQueuePaused hands a move's hold of tenant id's queue over to an
// operator's pause (fair.Paused, which ResumeQueue lifts; the move's own
// hold is the caller's to release), as PauseQueue makes one: recorded in
// the catalog first (a hold Redis loses is put back from the record), then
// held in every queue, then settled with a racing PauseQueue or
// ResumeQueue (settlePause), so that the record and the holds agree. Of
// it and a racing resume, the one that changed the first queue last wins:
// a resume that released it before this hold (which found no pause, or an
// earlier one, to release, and answered success) loses, and the queue
// stays paused, recorded; one that released it after this hold wins, and
// the queue runs once the move's hold goes, unrecorded. It reports whether
// the queue is paused once settled.
//
// A tenant being deleted is not paused (ErrRefused), as PauseQueue
// refuses one: the pause would hold its tenant:destroy. It is checked
// before the record, and again once the pause is settled, when a deletion
// requested meanwhile (which lifted the holds and cleared the record
// before this pause was made) has the pause lifted again (unpauseDeleted);
// the move's hold is then the caller's to release too.
func (s *Service) keepQueuePaused(ctx context.Context, id string) (bool, error) {
	if err := s.unpauseDeleted(ctx, id, "pause"); err != nil {
		return false, err
	}
	if err := s.catalog.SetQueuePaused(ctx, id, true); err != nil {
		return false, fmt.Errorf("record the pause: %w", err)
	}
	if _, err := s.fair.Hold(ctx, id, fair.Paused, s.holdQueues(id)...); err != nil {
		return false, fmt.Errorf("hold its queues: %w", err)
	}
	if err := s.settlePause(ctx, id); err != nil {
		return false, err
	}
	if err := s.unpauseDeleted(ctx, id, "pause"); err != nil {
		return false, err
	}
	paused, err := s.fair.HeldFor(ctx, id, fair.Paused, s.holdQueues(id)[0])
	if err != nil {
		return false, fmt.Errorf("read its pause: %w", err)
	}
	return paused, nil
}

// lastMove returns the audit entry of tenant id's last move (its start,
// or how it ended) and whether an operator resumed the queue after it (as
// its error asks when it left the queue paused) and did not pause it again
// since.
func (s *Service) lastMove(ctx context.Context, id string) (last storage.AuditEntry, resumed bool, err error) {
	entries, err := s.catalog.AuditEntries(ctx, id)
	if err != nil {
		return last, false, fmt.Errorf("read the last move: %w", err)
	}
	for _, e := range entries {
		switch e.Action {
		case string(ActionMoveStarted), string(ActionMoved), string(ActionMoveFailed):
			last, resumed = e, false
		case string(ActionQueueResumed):
			resumed = true
		case string(ActionQueuePaused):
			resumed = false
		}
	}
	return last, resumed, nil
}

// stepSwitchUnknown is the step of ActionMoveFailed when the catalog did
// not say whether the switch was saved.
const stepSwitchUnknown = "switch (outcome unknown)"

// WatchStaleMoves runs ReleaseStaleMoves every interval until ctx is done,
// logging its errors: a move killed outright holds its tenant's work for
// at most about one interval. The workers run it.
func (s *Service) WatchStaleMoves(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.ReleaseStaleMoves(ctx); err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "release the holds of interrupted tenant moves", slog.String("error", err.Error()))
		}
	}
}

// progress tells opts.Progress, if set, the step the move starts.
func (o MoveOptions) progress(format string, args ...any) {
	if o.Progress != nil {
		o.Progress(fmt.Sprintf(format, args...))
	}
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
