package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
)

// dbDownStack is a stack with one worker and two tenant databases, "main"
// and "second" (a dedicated server, to be broken), with a tenant on each.
type dbDownStack struct {
	*stack
	pg          *testenv.PostgresServer
	second      *pgxpool.Pool
	onMain      placed
	onSecond    placed
	concurrency int
}

// newDBDownStack starts it, with nMain and nSecond invoices seeded.
func newDBDownStack(t *testing.T, concurrency, nMain, nSecond int, env map[string]string) *dbDownStack {
	t.Helper()
	pg := testenv.StartPostgres(t)
	secondURL := pg.CreateDatabase(t)
	// A task turned away (tenant database busy) or that found the
	// database unreachable is tried again 1-2 s later
	// (NOT_READY_DELAY_MIN/_MAX), not 15-30 s: what the tests wait for
	// once second answers again.
	e := map[string]string{"TENANT_DATABASES": "second=" + secondURL,
		"NOT_READY_DELAY_MIN": "1s", "NOT_READY_DELAY_MAX": "2s"}
	for k, v := range env {
		e[k] = v
	}
	s := newStack(t, stackOptions{workers: 1, concurrency: concurrency, env: e})
	second, err := pgxpool.New(context.Background(), secondURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Close)
	d := &dbDownStack{stack: s, pg: pg, second: second, concurrency: concurrency}
	tenants := s.provisionOnMainAndSecond()
	d.onMain, d.onSecond = tenants[0], tenants[1]
	s.waitStatus([]string{d.onMain.ID, d.onSecond.ID}, "active", 120*time.Second)
	s.seedIn(s.db, d.onMain.tenantRef, invoiceSeed{overdue: nMain, lines: 5})
	s.seedIn(second, d.onSecond.tenantRef, invoiceSeed{overdue: nSecond, lines: 5})
	// Both databases' pools are open and used.
	s.waitCompleted(tasks.QueueDefault, []string{
		s.mustPost(d.onMain.tenantRef, "pdf", 1).TaskID,
		s.mustPost(d.onSecond.tenantRef, "pdf", 1).TaskID,
	}, 60*time.Second)
	return d
}

// activeOf counts the tasks of tenant id asynq shows active in queue.
func (d *dbDownStack) activeOf(id string) (int, error) {
	active, err := d.inspector.ListActiveTasks(tasks.QueueDefault)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, ti := range active {
		if strings.Contains(string(ti.Payload), id) {
			n++
		}
	}
	return n, nil
}

// mainServedWhileSecondBroken enqueues renders of the tenant on second
// (ids 2..nSecond+1, before break breaks its database: the API checks
// the invoices there), then renders of the tenant on main, and checks that
// every render of main's tenant completes while second stays broken, and
// that second's tasks never hold every worker slot. It returns the
// second tenant's task ids.
func (d *dbDownStack) mainServedWhileSecondBroken(t *testing.T, nMain, nSecond int, breakIt func()) []string {
	t.Helper()
	if err := d.inspector.PauseQueue(tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	var onSecond, onMain []string
	for id := 2; id <= nSecond+1; id++ {
		onSecond = append(onSecond, d.mustPost(d.onSecond.tenantRef, "pdf", id).TaskID)
	}
	for id := 2; id <= nMain+1; id++ {
		onMain = append(onMain, d.mustPost(d.onMain.tenantRef, "pdf", id).TaskID)
	}
	breakIt()
	if err := d.inspector.UnpauseQueue(tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	// Sample how many slots second's tasks hold while main's renders run.
	most := 0
	deadline := time.Now().Add(100 * time.Second) // a bound for the failure message: the PDF task's timeout is 2 min
	for {
		n, err := d.activeOf(d.onSecond.ID)
		if err != nil {
			t.Fatal(err)
		}
		most = max(most, n)
		_, states, err := d.taskStates(tasks.QueueDefault, onMain)
		if err != nil {
			t.Fatal(err)
		}
		if states["completed"] == len(onMain) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("while second is broken, %d of %d renders of the tenant on main completed (%v); second's tasks held up to %d of %d worker slots",
				states["completed"], len(onMain), states, most, d.concurrency)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The tasks of second over its bound were turned away, not kept
	// waiting in a slot until their deadline.
	if w := d.workers[0]; !w.logContains("tenant database busy") {
		t.Errorf("no task of second was turned away (tenant database busy) while it was broken")
	}
	t.Logf("second's tasks held at most %d of %d worker slots (one of them waiting for a slot of second's)", most, d.concurrency)
	return onSecond
}

// TestHungTenantDatabaseDoesNotTakeEveryWorkerSlot: a tenant database
// that answers nothing (its server stopped with SIGSTOP: connections and
// queries hang) must not let its tenants' tasks take every worker slot
// while they wait for their deadline; the tenants on the healthy database
// are served meanwhile, and every task completes once it answers again.
func TestHungTenantDatabaseDoesNotTakeEveryWorkerSlot(t *testing.T) {
	t.Parallel()
	const concurrency, nMain, nSecond = 4, 20, 20
	d := newDBDownStack(t, concurrency, nMain+1, nSecond+1, nil)
	var thaw func()
	onSecond := d.mainServedWhileSecondBroken(t, nMain, nSecond, func() { thaw = d.pg.Freeze(t) })
	thaw()
	d.waitCompleted(tasks.QueueDefault, onSecond, 300*time.Second)
}

// TestLockedTenantDatabaseDoesNotTakeEveryWorkerSlot: the same with the
// tenant tables of the database on second locked by a long transaction
// (ACCESS EXCLUSIVE: reads wait too), so that its tasks wait for their
// statement timeout (the task's deadline).
func TestLockedTenantDatabaseDoesNotTakeEveryWorkerSlot(t *testing.T) {
	t.Parallel()
	const concurrency, nMain, nSecond = 4, 20, 20
	d := newDBDownStack(t, concurrency, nMain+1, nSecond+1, nil)
	ctx := context.Background()
	tx, err := d.second.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	onSecond := d.mainServedWhileSecondBroken(t, nMain, nSecond, func() {
		if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{d.onSecond.Schema, "invoices"}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
	})
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	d.waitCompleted(tasks.QueueDefault, onSecond, 300*time.Second)
}

// TestStoppedTenantDatabaseWaitsWithoutFailing: with a tenant database's
// server stopped (connections refused), the tenants on the healthy "main"
// are served, and the stopped database's tasks wait without using up
// their retries (retry count 0, not archived: "database ... unavailable",
// outcome not_ready), and complete once it is started again.
func TestStoppedTenantDatabaseWaitsWithoutFailing(t *testing.T) {
	t.Parallel()
	const concurrency, nMain, nSecond = 4, 10, 10
	d := newDBDownStack(t, concurrency, nMain+1, nSecond+1, nil)
	if err := d.inspector.PauseQueue(tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	var onSecond, onMain []string
	for id := 2; id <= nSecond+1; id++ {
		onSecond = append(onSecond, d.mustPost(d.onSecond.tenantRef, "pdf", id).TaskID)
	}
	for id := 2; id <= nMain+1; id++ {
		onMain = append(onMain, d.mustPost(d.onMain.tenantRef, "pdf", id).TaskID)
	}
	d.pg.Stop(t)
	t.Cleanup(func() { d.pg.Start(t) }) // before its database is dropped, should the test fail while it is stopped
	if err := d.inspector.UnpauseQueue(tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	d.waitCompleted(tasks.QueueDefault, onMain, 100*time.Second)
	var infos map[string]*asynq.TaskInfo
	var byState map[string]int
	eventually(t, 60*time.Second, 250*time.Millisecond, "every task of second tried while it is stopped", func() error {
		var err error
		if infos, byState, err = d.taskStates(tasks.QueueDefault, onSecond); err != nil {
			return err
		}
		for id, ti := range infos {
			if ti.LastErr == "" {
				return fmt.Errorf("task %s not tried yet (%s)", id, ti.State)
			}
		}
		return nil
	})
	for id, ti := range infos {
		if ti.State == asynq.TaskStateArchived || ti.Retried != 0 {
			t.Errorf("task %s of the stopped database: %s, retried %d, last error %q; want waiting with retry count 0", id, ti.State, ti.Retried, ti.LastErr)
		}
	}
	if !d.workers[0].logContains("unavailable, retried later without counting as a failure") {
		t.Errorf("no attempt of second's tasks logged as a database unavailable")
	}
	t.Logf("second's tasks while it was stopped: %v", byState)
	d.pg.Start(t)
	d.waitCompleted(tasks.QueueDefault, onSecond, 300*time.Second)
}
