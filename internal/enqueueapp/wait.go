package enqueueapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// Defaults of migrate --wait.
const (
	defaultWaitTimeout  = 10 * time.Minute
	defaultPollInterval = 500 * time.Millisecond
	// lookupGrace is how long the tasks' look-ups may keep failing (Redis
	// restarting or failing over) before the wait gives up on them: the
	// migrations go on in the workers meanwhile.
	lookupGrace = 30 * time.Second
)

// waitOptions configures waitMigrations.
type waitOptions struct {
	timeout, poll time.Duration
	out           io.Writer
	terminal      bool
	// tenant reads a tenant from the catalog itself (not a cache): a
	// migration that ends without completing is checked against it, so
	// that a tenant deleted meanwhile is not counted as failed. Nil
	// counts every such migration as failed.
	tenant func(ctx context.Context, id string) (tenantctx.Tenant, error)
	// hold says what keeps a tenant's tasks in a queue waiting for an
	// operator or a move (tenancy.Service.QueueHold: a paused queue, a
	// move's hold), "" when nothing does: a migration waiting for such a
	// hold is named with it, in the progress and at the end, instead of
	// waiting out the timeout without a reason. Nil checks nothing.
	hold func(ctx context.Context, id, queue string) (string, error)
}

// migrationOutcome is where one tenant's migration stands.
type migrationOutcome struct {
	task   tenancy.MigrationTask
	done   bool
	failed bool
	// deleted: the migration did not complete because the tenant was
	// deleted (or is being deleted) meanwhile: nothing left to migrate,
	// not a failure.
	deleted bool
	reason  string // last error while retrying or why it failed
	// held: what keeps the pending migration waiting (waitOptions.hold),
	// "" when nothing does.
	held string
}

// waitMigrations polls each tenant:migrate task until it completed
// (done) or was archived or vanished (failed, or deleted when its tenant
// was deleted meanwhile), printing "done/failed/total" progress (and how
// many tenants were deleted): on one updating line on a terminal, as a
// plain line per change otherwise. It returns an error listing the failed
// tenants, and the unfinished ones after the timeout; a deleted tenant is
// neither. Look-ups that fail are tried again at the next poll, the
// progress saying so, until they have failed for lookupGrace in a row.
func waitMigrations(ctx context.Context, enq *tasks.Enqueuer, all []tenancy.MigrationTask, o waitOptions) error {
	stopped := ctx // a signal, not the timeout
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	outcomes := make([]*migrationOutcome, len(all))
	for i, m := range all {
		outcomes[i] = &migrationOutcome{task: m}
	}
	lastLine := ""
	var lookupErr error // the last poll's failure, nil when it answered
	report := func(final bool) {
		done, failed, deleted, retrying, held := countOutcomes(outcomes)
		line := fmt.Sprintf("migrations: %d/%d/%d done/failed/total", done, failed, len(outcomes))
		var notes []string
		if deleted > 0 {
			notes = append(notes, fmt.Sprintf("%d tenants deleted", deleted))
		}
		if retrying > 0 {
			notes = append(notes, fmt.Sprintf("%d retrying", retrying))
		}
		if held > 0 {
			notes = append(notes, fmt.Sprintf("%d held: queue paused or moving", held))
		}
		if lookupErr != nil {
			notes = append(notes, "look-ups failing, retrying: "+oneLine(lookupErr.Error()))
		}
		if len(notes) > 0 {
			line += " (" + strings.Join(notes, ", ") + ")"
		}
		switch {
		case o.terminal:
			fmt.Fprintf(o.out, "\r\033[K%s", line)
			if final {
				fmt.Fprintln(o.out)
			}
		case line != lastLine:
			fmt.Fprintln(o.out, line)
		}
		lastLine = line
	}

	ticker := time.NewTicker(o.poll)
	defer ticker.Stop()
	var failingSince time.Time
	for {
		err := pollOnce(ctx, enq, outcomes, o)
		switch {
		case err == nil:
			lookupErr, failingSince = nil, time.Time{}
		case ctx.Err() == nil:
			lookupErr = err
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			if time.Since(failingSince) >= lookupGrace {
				report(true)
				return fmt.Errorf("%w (look-ups failing for %v; the migrations go on in the workers)", err, lookupGrace)
			}
		}
		finished := !slices.ContainsFunc(outcomes, func(m *migrationOutcome) bool { return !m.finished() })
		stop := finished || ctx.Err() != nil
		report(stop)
		if stop {
			if !finished && stopped.Err() != nil {
				return interrupted(outcomes)
			}
			return summarize(outcomes, ctx.Err())
		}
		select {
		case <-ctx.Done():
		case <-ticker.C:
		}
	}
}

// finished reports whether m's migration has ended one way or another.
func (m *migrationOutcome) finished() bool { return m.done || m.failed || m.deleted }

// pollOnce checks every unfinished migration once.
func pollOnce(ctx context.Context, enq *tasks.Enqueuer, outcomes []*migrationOutcome, o waitOptions) error {
	for _, m := range outcomes {
		if m.finished() {
			continue
		}
		if err := check(ctx, enq, m, o.hold); err != nil {
			return err
		}
		if m.failed && o.tenant != nil {
			markDeleted(ctx, m, o.tenant)
		}
	}
	return nil
}

// markDeleted turns m, a migration that ended without completing, into a
// deleted one when its tenant is gone from the catalog or being deleted:
// its task was archived ("is being deleted") or erased with the tenant,
// and there is nothing left to migrate. A failed look-up leaves m failed.
func markDeleted(ctx context.Context, m *migrationOutcome, tenant func(context.Context, string) (tenantctx.Tenant, error)) {
	t, err := tenant(ctx, m.task.TenantID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && t.Status == tenantctx.StatusDeleting) {
		m.failed, m.deleted = false, true
	}
}

// check updates m from its task's state, and for a pending task what
// holds it (hold, when not nil; a failed look-up keeps what was known).
func check(ctx context.Context, enq *tasks.Enqueuer, m *migrationOutcome, hold func(context.Context, string, string) (string, error)) error {
	ti, err := enq.TenantTask(ctx, m.task.TenantID, m.task.TaskID)
	if err == nil || errors.Is(err, tasks.ErrTaskNotFound) {
		m.held = "" // known again below; a failed look-up (the wait's end) keeps it
	}
	if errors.Is(err, tasks.ErrTaskNotFound) {
		m.failed, m.reason = true, "migration task vanished (the task was removed)"
		return nil
	}
	if err != nil {
		return fmt.Errorf("check migration of tenant %s: %w", m.task.TenantID, err)
	}
	switch ti.State {
	case asynq.TaskStateCompleted:
		// A worker of an older release (a rolling deploy) completes the
		// task at its own latest version: not done for this release.
		var res struct {
			To int `json:"to"`
		}
		if json.Unmarshal(ti.Result, &res) == nil && res.To > 0 && res.To < schema.LatestVersion() {
			m.failed, m.reason = true, fmt.Sprintf("migrated to version %d, not %d: a worker of an older release ran it; run migrate --all again once every worker runs this release",
				res.To, schema.LatestVersion())
			return nil
		}
		m.done = true
	case asynq.TaskStateArchived:
		m.failed, m.reason = true, ti.LastErr
	default:
		m.reason = ti.LastErr
		if ti.State == asynq.TaskStatePending && hold != nil {
			if h, err := hold(ctx, m.task.TenantID, ti.Queue); err == nil {
				m.held = h
			}
		}
	}
	return nil
}

// summarize returns nil when every migration is done, else an error naming
// the failed and (after a timeout) unfinished tenants.
func summarize(outcomes []*migrationOutcome, waitErr error) error {
	var failed, unfinished []string
	for _, m := range outcomes {
		name := m.task.Slug + " (" + m.task.TenantID + ")"
		switch {
		case m.done, m.deleted:
		case m.failed:
			failed = append(failed, name+": "+oneLine(m.reason))
		default:
			if m.held != "" {
				name += ": " + heldNote(m)
			} else if m.reason != "" {
				name += ": retrying after: " + oneLine(m.reason)
			}
			unfinished = append(unfinished, name)
		}
	}
	if len(failed) == 0 && len(unfinished) == 0 {
		return nil
	}
	slices.Sort(failed)
	slices.Sort(unfinished)
	var b strings.Builder
	if len(failed) > 0 {
		fmt.Fprintf(&b, "%d tenant migrations failed:\n  %s", len(failed), strings.Join(failed, "\n  "))
	}
	if len(unfinished) > 0 {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		cause := "unfinished"
		if waitErr != nil {
			cause = "unfinished when the wait ended (" + waitErr.Error() + ")"
		}
		fmt.Fprintf(&b, "%d tenant migrations %s:\n  %s", len(unfinished), cause, strings.Join(unfinished, "\n  "))
	}
	return errors.New(b.String())
}

// countOutcomes counts the migrations by where they stand: each in the
// first of done, deleted, failed, held (its queue paused or moving) and
// retrying that it is.
func countOutcomes(outcomes []*migrationOutcome) (done, failed, deleted, retrying, held int) {
	for _, m := range outcomes {
		switch {
		case m.done:
			done++
		case m.deleted:
			deleted++
		case m.failed:
			failed++
		case m.held != "":
			held++
		case m.reason != "":
			retrying++
		}
	}
	return done, failed, deleted, retrying, held
}

// interrupted is the error of a wait a signal stopped (errInterrupted):
// how many migrations are done and how many are left, that the workers go
// on with them and a rerun continues, then the failed and unfinished
// tenants as summarize lists them.
func interrupted(outcomes []*migrationOutcome) error {
	done, failed, deleted, _, _ := countOutcomes(outcomes)
	left := len(outcomes) - done - failed - deleted
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d tenant migrations done, %d left", done, len(outcomes), left)
	if failed > 0 {
		fmt.Fprintf(&b, ", %d failed", failed)
	}
	if deleted > 0 {
		fmt.Fprintf(&b, ", %d tenants deleted", deleted)
	}
	b.WriteString("; the workers go on with those left, and running \"enqueue migrate --all --wait\" again continues (a tenant's migration is never queued twice)")
	if rest := summarize(outcomes, nil); rest != nil {
		b.WriteString(":\n" + rest.Error())
	}
	return fmt.Errorf("%w while waiting: %s", errInterrupted, b.String())
}

// heldNote says why m's pending migration waits, and what lets it run.
func heldNote(m *migrationOutcome) string {
	if m.held == tenancy.HoldMoving {
		return "waiting: " + m.held + " (it runs once the move ends; the workers release the hold of a move whose process died, checking every 30 s)"
	}
	return fmt.Sprintf("waiting: %s (POST /admin/tenants/%s/queue/resume lets it run)", m.held, m.task.TenantID)
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	if s == "" {
		return "no error recorded"
	}
	return strings.Join(strings.Fields(s), " ")
}
