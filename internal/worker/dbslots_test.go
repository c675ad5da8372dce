package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/tenantctx"
)

// TestDatabaseSlotsBoundsOneDatabase: with limit 2, two tasks of tenants
// on "second" run while a third is turned away with ErrDatabaseBusy (a
// not-ready error: retried, no failure counted); tasks of "main" and of
// another database run all the same; a slot given back serves the next.
func TestDatabaseSlotsBoundsOneDatabase(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	releaseAll := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseAll) // a failed check leaves no task blocked
	started := make(chan string, 10)
	h := DatabaseSlots(2, 10*time.Millisecond)(asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
		tn, _ := tenantctx.FromContext(ctx)
		started <- tn.DatabaseName()
		<-release
		return nil
	}))
	// Each task is of a tenant of its own: the bound is the database's,
	// not a tenant's.
	n := 0
	run := func(db string) chan error {
		n++
		done := make(chan error, 1)
		ctx := tenantctx.WithTenant(context.Background(), tenantctx.Tenant{ID: fmt.Sprintf("tn_x%d", n), Database: db})
		go func() { done <- h.ProcessTask(ctx, asynq.NewTask("invoice:pdf", nil)) }()
		return done
	}
	// runs starts a task of db that must run: it fails the test, instead
	// of waiting for ever, when the task is turned away.
	runs := func(db string) chan error {
		t.Helper()
		done := run(db)
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("task of %s turned away: %v, want it running", db, err)
		}
		return done
	}
	first, second := runs("second"), runs("second")
	select {
	case err := <-run("second"):
		if !errors.Is(err, ErrDatabaseBusy) || IsFailure(err) {
			t.Fatalf("third task of second: %v, want ErrDatabaseBusy, not a failure", err)
		}
	case <-started:
		t.Fatal("third task of second ran, want it turned away with ErrDatabaseBusy")
	}
	others := []chan error{runs("main"), runs("main"), runs("main"), runs("third")}
	releaseAll()
	for _, c := range append(others, first, second) {
		if err := <-c; err != nil {
			t.Fatal(err)
		}
	}
	if err := <-run("second"); err != nil {
		t.Fatalf("task of second after the slots came back: %v", err)
	}
}

// TestDatabaseSlotsTurnAwayAtOnceWhenStuck: when none of a database's
// slots was given back for the whole wait (the database hangs), a task
// over the bound is turned away at once instead of holding a worker slot
// for the wait too; a busy database that gives slots back keeps tasks
// waiting for one.
func TestDatabaseSlotsTurnAwayAtOnceWhenStuck(t *testing.T) {
	t.Parallel()
	const wait = 2 * time.Second
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	h := DatabaseSlots(1, wait)(asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
		started <- struct{}{}
		<-release
		return nil
	}))
	ctx := tenantctx.WithTenant(context.Background(), tenantctx.Tenant{ID: "tn_x", Database: "second"})
	held := make(chan error, 1)
	go func() { held <- h.ProcessTask(ctx, asynq.NewTask("invoice:pdf", nil)) }()
	<-started
	time.Sleep(wait + 100*time.Millisecond) // the slot held longer than the wait: stuck
	begin := time.Now()
	err := h.ProcessTask(ctx, asynq.NewTask("invoice:pdf", nil))
	// Not a measurement: waiting would take the whole 2 s wait.
	if took := time.Since(begin); !errors.Is(err, ErrDatabaseBusy) || took > wait/2 {
		t.Fatalf("a task of the stuck database: %v after %v, want ErrDatabaseBusy at once", err, took)
	}
	// The held task ends: the database gives slots back again, so a task
	// over the bound waits for one and takes it when it is given back.
	release <- struct{}{}
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() { second <- h.ProcessTask(ctx, asynq.NewTask("invoice:pdf", nil)) }()
	<-started
	waiting := make(chan error, 1)
	go func() { waiting <- h.ProcessTask(ctx, asynq.NewTask("invoice:pdf", nil)) }()
	time.Sleep(50 * time.Millisecond)
	close(release)
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if err := <-waiting; err != nil {
		t.Fatalf("a task that waited for a slot given back: %v", err)
	}
}

// TestDatabaseSlotsLongTaskDoesNotMakeABurstStuck: one long task of a
// healthy database (a migration, a large render) holds a slot past the
// wait; a burst then fills the other slots, and a task over the bound
// that arrives moments later must wait for one of them (given back
// within moments), not be turned away at once as if the database were
// stuck: its slots were just taken, so it answers.
func TestDatabaseSlotsLongTaskDoesNotMakeABurstStuck(t *testing.T) {
	t.Parallel()
	const wait = time.Second
	long, short := make(chan struct{}), make(chan struct{})
	started := make(chan struct{}, 10)
	h := DatabaseSlots(2, wait)(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		started <- struct{}{}
		if task.Type() == "long" {
			<-long
		} else {
			<-short
		}
		return nil
	}))
	ctx := tenantctx.WithTenant(context.Background(), tenantctx.Tenant{ID: "tn_x", Database: "second"})
	run := func(typ string) chan error {
		done := make(chan error, 1)
		go func() { done <- h.ProcessTask(ctx, asynq.NewTask(typ, nil)) }()
		return done
	}
	held := run("long")
	<-started
	time.Sleep(wait + 100*time.Millisecond) // the long task runs on
	burst := run("short")
	<-started // the burst's first task just took the second slot
	next := run("short")
	time.Sleep(50 * time.Millisecond)
	close(short) // the burst's task ends: its slot is given back
	if err := <-burst; err != nil {
		t.Fatal(err)
	}
	if err := <-next; err != nil {
		t.Fatalf("a task over the bound moments after the burst took the slots: %v, want it to wait for the slot given back", err)
	}
	close(long)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}
