package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/childproc"
	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestDatabaseUnreachableIsNotAFailure: an attempt that failed only
// because PostgreSQL could not be reached (a stopped server: the tenant
// look-up on "main" and the handler's connection both refused) is a
// not-ready wait (ErrDatabaseUnavailable: not a failure, outcome
// not_ready), for a render and for the daily sweep; once the server is
// back both run. Errors met on a connection (a failing query, an unknown
// database) stay failures.
func TestDatabaseUnreachableIsNotAFailure(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	dbURL := pg.CreateDatabase(t)
	e := newHandlerEnvOn(t, nil, dbURL)
	tn := e.provision(t, "unreach", "Unreachable Ltd")
	e.addInvoice(t, tn, acmeCustomer, acmeInvoice)

	pg.Stop(t)
	for _, p := range []tasks.Payload{tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}, tasks.SweepOverdue{Tick: 1700000000}} {
		err := e.work(p)
		if !errors.Is(err, worker.ErrDatabaseUnavailable) || worker.IsFailure(err) || worker.Outcome(err) != worker.OutcomeNotReady {
			t.Errorf("%s with its database stopped: %v (failure %t, outcome %s); want ErrDatabaseUnavailable, not a failure, not_ready",
				p.TypeName(), err, worker.IsFailure(err), worker.Outcome(err))
		}
	}
	pg.Start(t)
	for _, p := range []tasks.Payload{tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}, tasks.SweepOverdue{Tick: 1700000000}} {
		// A pooled connection the stop ended may still answer 57P01 once:
		// a wait as well.
		err := e.work(p)
		for i := 0; i < 10 && errors.Is(err, worker.ErrDatabaseUnavailable); i++ {
			err = e.work(p)
		}
		if err != nil {
			t.Errorf("%s after the restart: %v", p.TypeName(), err)
		}
	}

	// A query error on a reachable database, and a database the server
	// does not have (a connect that the server answered), still count.
	missing, err := pgxpool.New(e.ctx, strings.Replace(dbURL, "/"+e.pool.Config().ConnConfig.Database, "/no_such_database_x", 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(missing.Close)
	catalog := memstore.New()
	other := addTenant(t, catalog, "query-error", tenantctx.StatusActive)
	for name, run := range map[string]func(ctx context.Context) error{
		"query error": func(ctx context.Context) error {
			_, err := e.pool.Exec(ctx, "SELECT * FROM no_such_table")
			return err
		},
		"unknown database": func(ctx context.Context) error {
			_, err := missing.Exec(ctx, "SELECT 1")
			return err
		},
	} {
		mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog}, map[string]asynq.Handler{
			tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error { return run(ctx) }),
		})
		payload, _ := json.Marshal(tasks.InvoicePDF{TenantID: other.ID, InvoiceID: 1})
		err := mux.ProcessTask(e.ctx, asynq.NewTask(tasks.TypeInvoicePDF, payload))
		if err == nil || !worker.IsFailure(err) || errors.Is(err, worker.ErrDatabaseUnavailable) {
			t.Errorf("%s: %v (failure %t); want a failure", name, err, worker.IsFailure(err))
		}
	}

	// Nothing listening at all (connection refused) is unreachable too.
	port, err := childproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	refused, err := pgxpool.New(e.ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/x?connect_timeout=5", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(refused.Close)
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
			_, err := refused.Exec(ctx, "SELECT 1")
			return err
		}),
	})
	payload, _ := json.Marshal(tasks.InvoicePDF{TenantID: other.ID, InvoiceID: 1})
	if err := mux.ProcessTask(e.ctx, asynq.NewTask(tasks.TypeInvoicePDF, payload)); !errors.Is(err, worker.ErrDatabaseUnavailable) || worker.IsFailure(err) {
		t.Errorf("connection refused: %v (failure %t); want ErrDatabaseUnavailable", err, worker.IsFailure(err))
	}
}

// TestDatabaseOutageDoesNotArchiveRenderOrSweep: with PostgreSQL stopped
// for longer than their retries allow, a render (one retry allowed) keeps
// its retry count and the daily sweep on its last attempt (no retry left)
// is not archived; both complete once the server is back.
func TestDatabaseOutageDoesNotArchiveRenderOrSweep(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	e := newHandlerEnvOn(t, nil, pg.CreateDatabase(t))
	tn := e.provision(t, "outage", "Outage GmbH")
	e.addInvoice(t, tn, acmeCustomer, acmeInvoice)
	rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr})
	t.Cleanup(func() { rdb.Close() })
	// The sweep's kept last attempt comes back 500 ms to 1 s later, not
	// 45 to 60 s (kept again while the server is down, run once it is
	// back); waits 100-200 ms apart, looked for every 50 ms: the outage
	// below spans a dozen attempts or more in 2 s, where the default
	// waits (1-2 s, looked for every second) needed 8 s for a few. One
	// worker: asynq ends a kept attempt (a Done, which deletes the task by
	// id when it finds it active) after the handler returned, and frees
	// the attempt's worker only then. With a second worker free, a kept
	// sweep back 500 ms later could be taken again before a Done that a
	// loaded machine held back that long, and the Done deleted the new run
	// ("task not found"); the production keep (45-60 s) outlasts the Done.
	startServer(t, e.redis, worker.NewServeMux(e.h, worker.WithLastAttemptKeep(worker.MuxOptions{Logger: discardLogger(), Redis: rdb}, 500*time.Millisecond, time.Second)),
		worker.ServerOptions{Concurrency: 1, NotReadyDelayMin: 100 * time.Millisecond, NotReadyDelayMax: 200 * time.Millisecond,
			DelayedTaskCheckInterval: 50 * time.Millisecond})

	client := asynq.NewClientFromRedisClient(rdb)
	enqueue := func(p tasks.Payload, maxRetry int) (queue, id string) {
		payload, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		spec := p.Spec()
		info, err := client.EnqueueContext(e.ctx, asynq.NewTask(p.TypeName(), payload), append(spec.Options(), asynq.MaxRetry(maxRetry))...)
		if err != nil {
			t.Fatal(err)
		}
		return info.Queue, info.ID
	}
	pg.Stop(t)
	renderQ, render := enqueue(tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}, 1)
	sweepQ, sweep := enqueue(tasks.SweepOverdue{Tick: time.Now().Unix()}, 0)
	time.Sleep(2 * time.Second) // several attempts, 100-200 ms apart
	for _, c := range []struct{ queue, id string }{{renderQ, render}, {sweepQ, sweep}} {
		info, err := e.inspector.GetTaskInfo(c.queue, c.id)
		if err != nil {
			t.Fatal(err)
		}
		if info.State == asynq.TaskStateArchived || info.Retried != 0 {
			t.Errorf("task %s while the database is down: %s, retried %d of %d, last error %q; want waiting, retry count 0",
				c.id, info.State, info.Retried, info.MaxRetry, info.LastErr)
		}
	}
	pg.Start(t)
	for _, c := range []struct{ queue, id string }{{renderQ, render}, {sweepQ, sweep}} {
		testenv.WaitFor(t, 2*time.Minute, "task "+c.id+" completes after the restart", func() bool {
			info, err := e.inspector.GetTaskInfo(c.queue, c.id)
			if err != nil {
				t.Fatal(err)
			}
			if info.State == asynq.TaskStateArchived {
				t.Fatalf("task %s archived: %q", c.id, info.LastErr)
			}
			return info.State == asynq.TaskStateCompleted
		})
	}
}

// countingMailer counts the messages it is asked to send; all succeed.
type countingMailer struct{ sent atomic.Int64 }

func (m *countingMailer) Send(context.Context, mailer.Message) error {
	m.sent.Add(1)
	return nil
}

// TestReminderWithDatabaseDownSendsOnceItIsBack: a reminder whose
// database is down waits (ErrDatabaseUnavailable) without sending; once
// the database is back it sends one email, and a run after that sends
// none (the day's row says sent).
func TestReminderWithDatabaseDownSendsOnceItIsBack(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	m := &countingMailer{}
	e := newHandlerEnvOn(t, m, pg.CreateDatabase(t))
	tn := e.provision(t, "remind-down", "Reminder Down AG")
	id := e.addInvoice(t, tn, acmeCustomer, acmeInvoice)
	p := tasks.InvoiceReminder{TenantID: tn.ID, InvoiceID: id, Day: tn.Day(e.now())}

	pg.Stop(t)
	t.Cleanup(func() { pg.Start(t) })
	if err := e.work(p); !errors.Is(err, worker.ErrDatabaseUnavailable) || worker.IsFailure(err) {
		t.Errorf("reminder with its database stopped: %v; want ErrDatabaseUnavailable, not a failure", err)
	}
	if n := m.sent.Load(); n != 0 {
		t.Fatalf("%d emails sent while the database was down", n)
	}
	pg.Start(t)
	err := e.work(p)
	for i := 0; i < 10 && errors.Is(err, worker.ErrDatabaseUnavailable); i++ {
		err = e.work(p) // a pooled connection the stop ended answers 57P01 once
	}
	if err != nil {
		t.Fatalf("reminder after the restart: %v", err)
	}
	if err := e.work(p); err != nil {
		t.Fatalf("reminder run again: %v", err)
	}
	if n := m.sent.Load(); n != 1 {
		t.Errorf("%d emails sent, want 1", n)
	}
	if rows := e.reminderRows(t, tn, id); len(rows) != 1 || rows[0].Status != "sent" {
		t.Errorf("reminder rows %+v, want one sent", rows)
	}
}
