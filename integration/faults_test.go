package integration

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
)

// TestWorkerKilledMidTask kills one of two workers with SIGKILL while PDF
// tasks run and starts it again: every task completes (the orphaned ones
// once asynq's recoverer finds their lease expired), and no invoice has
// more than one document row or file (P12 in docs/architecture.md). It logs how long the
// orphaned tasks took to complete.
func TestWorkerKilledMidTask(t *testing.T) {
	t.Parallel()
	const nInvoices = 400
	s := newStack(t, stackOptions{workers: 2, concurrency: 4})
	tenants := s.provision(tenantSlugs("kill", 2), tenantName)
	for _, tn := range tenants {
		s.seed(tn, invoiceSeed{overdue: nInvoices, lines: 200})
	}

	// The load is renewed when it runs low, with bulk requests (the
	// workers render faster than single requests arrive) for changed
	// invoices.
	ids := s.rerender(tenants, nInvoices, false)
	renew := func() { ids = append(ids, s.rerender(tenants, nInvoices, true)...) }
	// Kill worker-0 once the load is well under way.
	eventually(t, 60*time.Second, 20*time.Millisecond, "first PDFs done", func() error {
		info, err := s.inspector.GetQueueInfo(tasks.QueueDefault)
		if err != nil {
			return err
		}
		if info.Completed < 40 {
			return fmt.Errorf("%d completed", info.Completed)
		}
		return nil
	})
	victim, survivor := s.workers[0], s.workers[1]
	finished := func() int { return strings.Count(victim.logText(), `"msg":"task finished"`) }
	var (
		orphans  []string
		killedAt time.Time
	)
	const killAttempts = 10
	for attempt := 1; ; attempt++ {
		// Kill the victim while it is working: enough tasks are left that
		// every slot of both workers is busy, and the victim's count of
		// finished tasks is still rising.
		for deadline := time.Now().Add(90 * time.Second); ; {
			if time.Now().After(deadline) {
				t.Fatalf("%s was not caught working in 90s", victim.name)
			}
			c, err := s.counts()
			if err != nil {
				t.Fatal(err)
			}
			if c.unfinished() < 40 {
				// The load ran low: renew it.
				renew()
				continue
			}
			before, rising := finished(), false
			for wait := time.Now().Add(time.Second); !rising && time.Now().Before(wait); time.Sleep(5 * time.Millisecond) {
				rising = finished() > before
			}
			if rising {
				break
			}
		}
		killedAt = time.Now()
		victim.kill()
		active, err := s.inspector.ListActiveTasks(tasks.QueueDefault)
		if err != nil {
			t.Fatal(err)
		}
		victim.start()
		victim.waitReady()

		// Which of the attempts active at the kill the dead worker held:
		// not those the surviving worker finished (its log says so,
		// whatever the outcome), however long a render takes on a loaded
		// machine. The dead worker's stay active until asynq's
		// recoverer finds their lease expired and retries them; wait until
		// every one is accounted for either way.
		type try struct {
			id    string
			retry int
		}
		finishedBySurvivor := func() map[try]bool {
			done := map[try]bool{}
			for _, r := range survivor.taskRuns("") {
				done[try{r.id, r.retry}] = true
			}
			return done
		}
		var bySurvivor map[try]bool
		eventually(t, 240*time.Second, 100*time.Millisecond, "the attempts active at the kill finished or retried", func() error {
			bySurvivor = finishedBySurvivor()
			for _, ti := range active {
				if bySurvivor[try{ti.ID, ti.Retried}] {
					continue
				}
				cur, err := s.inspector.GetTaskInfo(tasks.QueueDefault, ti.ID)
				if err == nil && cur.State == asynq.TaskStateActive && cur.Retried == ti.Retried {
					return fmt.Errorf("%s still active", ti.ID)
				}
			}
			return nil
		})
		for _, ti := range active {
			if !bySurvivor[try{ti.ID, ti.Retried}] {
				orphans = append(orphans, ti.ID)
			}
		}
		if len(orphans) > 0 {
			break
		}
		if attempt == killAttempts {
			t.Fatalf("no task was orphaned by %d kills (active at the last: %d): the kills hit no running task", killAttempts, len(active))
		}
		// The kill found the victim between tasks: try again (the load is
		// renewed when it runs low).
	}

	s.waitCompleted(tasks.QueueDefault, ids, 240*time.Second)
	infos := s.waitCompleted(tasks.QueueDefault, orphans, time.Second)
	var last time.Time
	for _, id := range orphans {
		ti := infos[id]
		if ti.CompletedAt.After(last) {
			last = ti.CompletedAt
		}
		if ti.Retried < 1 || !strings.Contains(ti.LastErr, "lease expired") {
			t.Errorf("orphaned task %s: retried %d, last error %q; want a retry after the lease expired", id, ti.Retried, ti.LastErr)
		}
	}
	t.Logf("kill -9 of %s with %d tasks in flight: all %d tasks completed; the orphans completed %.1fs after the kill",
		victim.name, len(orphans), len(ids), last.Sub(killedAt).Seconds())

	for _, tn := range tenants {
		rows, distinct, files := s.documentCounts(tn)
		if rows != nInvoices || distinct != nInvoices || files != nInvoices {
			t.Errorf("tenant %s: %d document rows (%d distinct invoices), %d files; want %d of each", tn.Slug, rows, distinct, files, nInvoices)
		}
		leftovers, _ := filepath.Glob(filepath.Join(s.docsDir, tn.ID, "invoices", "*~*"))
		if len(leftovers) > 0 {
			t.Logf("tenant %s: the killed worker left %d temporary files: %v", tn.Slug, len(leftovers), leftovers)
		}
	}
}

// TestRedisRestartedMidLoad stops Redis (append-only file on) while PDF
// requests and tasks flow, and starts it again: both processes report the
// outage on /readyz (503) and the recovery (200) on their own, and every
// enqueue that was answered 202 completes.
func TestRedisRestartedMidLoad(t *testing.T) {
	t.Parallel()
	const nInvoices = 3000
	rs := testenv.StartRedis(t, testenv.RedisOptions{AppendOnly: true})
	s := newStack(t, stackOptions{workers: 1, concurrency: 4, redis: rs})
	tn := s.provision(tenantSlugs("redis", 1), tenantName)[0]
	s.seed(tn, invoiceSeed{overdue: nInvoices, lines: 1})

	load := startPacedLoad(t, s, tn, nInvoices)
	load.waitAccepted(t, 300, 60*time.Second, "load under way")

	rs.Stop(t)
	stoppedAt := time.Now()
	for _, p := range append([]*proc{s.enqueue}, s.workers...) {
		if err := p.waitStatus("/readyz", http.StatusServiceUnavailable, 30*time.Second); err != nil {
			t.Fatalf("%s during the Redis outage: %v", p.name, err)
		}
	}
	time.Sleep(3 * time.Second)
	rs.Start(t)
	restartedAt := time.Now()
	defer func() {
		t.Logf("every acknowledged task completed %.1fs after Redis was back", time.Since(restartedAt).Seconds())
	}()
	s.waitRecovered(t, 60*time.Second, "the Redis outage")
	ready := time.Since(restartedAt)
	load.waitAccepted(t, 200, 60*time.Second, "enqueues accepted again")
	acks, refused := load.finish()
	ids := ackIDs(acks)
	s.waitCompleted(tasks.QueueDefault, ids, 240*time.Second)
	rows, distinct, files := s.documentCounts(tn)
	if rows != distinct || files != rows || rows < len(ids) {
		t.Errorf("%d document rows (%d distinct), %d files for %d acknowledged tasks", rows, distinct, files, len(ids))
	}
	t.Logf("Redis down %.1fs: %d enqueues acknowledged (202) all completed; refused during the outage by status: %v; /readyz 200 again %.1fs after Redis was back",
		restartedAt.Sub(stoppedAt).Seconds(), len(ids), refused, ready.Seconds())
	// An outage is the client's cue to retry: 503 (with Retry-After), or a
	// request that got no answer in time; never 500, which says the
	// request itself failed.
	for status := range refused {
		if status != 0 && status != http.StatusServiceUnavailable {
			t.Errorf("during the outage %d requests were answered %d; want 503 (or no answer)", refused[status], status)
		}
	}
}

// TestPostgresRestartedMidLoad stops PostgreSQL while PDF tasks run and
// starts it again: the tasks fail, are retried and all complete; afterwards
// no pool holds a broken connection: /readyz is 200, and a new batch of
// tasks completes without a single failed attempt, and the enqueue
// service serves a PDF from the database.
func TestPostgresRestartedMidLoad(t *testing.T) {
	t.Parallel()
	// Enough renders that the workers are still busy when PostgreSQL has
	// stopped, however fast they render and however slowly it stops.
	const nInvoices, nAfter = 1500, 100
	pg := testenv.StartPostgres(t)
	// An attempt that found PostgreSQL down is tried again 1-2 s later
	// (NOT_READY_DELAY_MIN/_MAX), not 15-30 s, and the breaker of main
	// probes it at least every 2 s (DB_BREAKER_PROBE_MAX), not 30 s: what
	// the test waits for once it is back.
	s := newStack(t, stackOptions{workers: 2, concurrency: 4, postgres: pg,
		env: map[string]string{"NOT_READY_DELAY_MIN": "1s", "NOT_READY_DELAY_MAX": "2s", "DB_BREAKER_PROBE_MAX": "2s"}})
	tn := s.provision(tenantSlugs("pgfault", 1), tenantName)[0]
	s.seed(tn, invoiceSeed{overdue: nInvoices + nAfter, lines: 30})

	var ids []string
	for id := 1; id <= 200; id++ {
		ids = append(ids, s.mustPost(tn, "pdf", id).TaskID)
	}
	eventually(t, 60*time.Second, 20*time.Millisecond, "first PDFs done", func() error {
		info, err := s.inspector.GetQueueInfo(tasks.QueueDefault)
		if err != nil {
			return err
		}
		if info.Completed < 30 {
			return fmt.Errorf("%d completed", info.Completed)
		}
		return nil
	})
	// The workers take no new task while the rest is enqueued and
	// PostgreSQL stops (the queue is paused in Redis), and take them again
	// once it is down: however fast they render, the outage finds work to
	// fail.
	if err := s.inspector.PauseQueue(tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	for id := 201; id <= nInvoices; id++ {
		ids = append(ids, s.mustPost(tn, "pdf", id).TaskID)
	}
	s.db.Reset() // the test's own pool must not keep dead connections either
	pg.Stop(t)
	stoppedAt := time.Now()
	if err := s.inspector.UnpauseQueue(tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	for _, p := range append([]*proc{s.enqueue}, s.workers...) {
		if err := p.waitStatus("/readyz", http.StatusServiceUnavailable, 30*time.Second); err != nil {
			t.Fatalf("%s during the PostgreSQL outage: %v", p.name, err)
		}
	}
	eventually(t, 60*time.Second, 20*time.Millisecond, "renders failing during the outage", func() error {
		info, err := s.inspector.GetQueueInfo(tasks.QueueDefault)
		if err != nil {
			return err
		}
		if info.Retry == 0 {
			return errNotYet
		}
		return nil
	})
	time.Sleep(time.Second)
	pg.Start(t)
	downFor := time.Since(stoppedAt)
	for _, p := range append([]*proc{s.enqueue}, s.workers...) {
		if err := p.waitStatus("/readyz", http.StatusOK, 60*time.Second); err != nil {
			t.Fatalf("%s after PostgreSQL came back: %v", p.name, err)
		}
	}
	infos := s.waitCompleted(tasks.QueueDefault, ids, 240*time.Second)
	retried := 0
	for _, ti := range infos {
		if ti.Retried > 0 {
			retried++
		}
	}
	// An attempt that found PostgreSQL down waited for it without
	// counting a failure (worker.ErrDatabaseUnavailable); only one cut off
	// mid-query by the stop counts.
	waited := 0
	for _, p := range s.workers {
		waited += strings.Count(p.logText(), "unavailable, retried later without counting as a failure")
	}
	if waited == 0 {
		t.Errorf("no task waited for PostgreSQL during the outage: the fault did not hit the load")
	}

	// After the restart: new work succeeds on the first attempt.
	var after []string
	for id := nInvoices + 1; id <= nInvoices+nAfter; id++ {
		after = append(after, s.mustPost(tn, "pdf", id).TaskID)
	}
	for id, ti := range s.waitCompleted(tasks.QueueDefault, after, 60*time.Second) {
		if ti.Retried != 0 {
			t.Errorf("task %s after the restart needed %d retries (last error %q): a pool kept a broken connection", id, ti.Retried, ti.LastErr)
		}
	}
	status, body, err := httpDo(context.Background(), http.MethodGet, s.enqueue.url(fmt.Sprintf("/v1/invoices/%d/pdf", nInvoices+1)), tn.host(), tn.Key, nil)
	if err != nil || status != http.StatusOK || !strings.HasPrefix(string(body), "%PDF") {
		t.Errorf("download after the restart: status %d, %v", status, err)
	}
	rows, distinct, files := s.documentCounts(tn)
	if rows != nInvoices+nAfter || distinct != rows || files != rows {
		t.Errorf("%d document rows (%d distinct), %d files; want %d", rows, distinct, files, nInvoices+nAfter)
	}
	t.Logf("PostgreSQL down %.1fs: %d attempts waited for it, %d of %d tasks retried after a counted failure, all completed; %d tasks after the restart completed on their first attempt",
		downFor.Seconds(), waited, retried, len(ids), len(after))
}

// TestShutdownUnderLoad sends SIGTERM to each of two workers while
// reminders and PDFs run (worker-0 with a 1 ms shutdown timeout, so its
// running tasks are cancelled and re-queued; worker-1 with 10 s, so they
// finish) and starts each again: every process exits 0 within its timeout,
// every task completes, and no reminder is sent twice (P11 in docs/architecture.md).
func TestShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	const nInvoices = 400
	s := newStack(t, stackOptions{workers: 2, concurrency: 4, workerEnv: func(i int) map[string]string {
		if i == 0 {
			return map[string]string{"SHUTDOWN_TIMEOUT": "1ms"}
		}
		return map[string]string{"SHUTDOWN_TIMEOUT": "10s"}
	}})
	tenants := s.provision(tenantSlugs("term", 2), tenantName)
	for _, tn := range tenants {
		s.seed(tn, invoiceSeed{overdue: nInvoices, lines: 20})
	}
	var pdfIDs, remIDs []string
	enqueueAll := func(lo, hi int) {
		for id := lo; id <= hi; id++ {
			for _, tn := range tenants {
				remIDs = append(remIDs, s.mustPost(tn, "reminders", id).TaskID)
				pdfIDs = append(pdfIDs, s.mustPost(tn, "pdf", id).TaskID)
			}
		}
	}
	enqueueAll(1, nInvoices/2)
	// renew replaces finished renders by new ones, of changed invoices,
	// when the load ran out before a SIGTERM caught the worker working.
	renew := func() { pdfIDs = append(pdfIDs, s.rerender(tenants, nInvoices/2, true)...) }

	// sigterm waits until tasks are running and enough are left that every
	// slot of both workers is busy (renewing the load when it runs low),
	// sends SIGTERM to w and checks it exits 0 within its shutdown timeout;
	// it returns how many running tasks w has pushed back to the queue so
	// far (its log spans restarts).
	sigterm := func(w *proc, timeout time.Duration) int {
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no task running on %s within 60s", w.name)
			}
			c, err := s.counts()
			if err != nil {
				t.Fatal(err)
			}
			if c.unfinished() < 40 {
				renew()
				continue
			}
			if c.active > 0 {
				break
			}
		}
		exitErr, took, exited := w.signal(syscall.SIGTERM, timeout+15*time.Second)
		if !exited {
			t.Fatalf("%s still running %s after SIGTERM (shutdown timeout %s)", w.name, took, timeout)
		}
		if exitErr != nil {
			t.Errorf("%s exited with %v after SIGTERM, want status 0", w.name, exitErr)
		}
		pushedBack := strings.Count(w.logText(), "back to queue")
		t.Logf("%s (SHUTDOWN_TIMEOUT %s) exited %.2fs after SIGTERM; tasks it pushed back to the queue so far: %d", w.name, timeout, took.Seconds(), pushedBack)
		return pushedBack
	}

	// worker-0, 1 ms: its running tasks must be pushed back. The active
	// tasks seen before the SIGTERM may be on the other worker, so a SIGTERM
	// that found worker-0 between tasks is repeated (a few times at most).
	w0 := s.workers[0]
	const sigtermAttempts = 10
	for attempt := 1; ; attempt++ {
		pushedBack := sigterm(w0, time.Millisecond)
		w0.start()
		w0.waitReady()
		if pushedBack > 0 {
			break
		}
		if attempt == sigtermAttempts {
			t.Errorf("%s with a 1 ms shutdown timeout pushed no running task back to the queue in %d SIGTERMs", w0.name, sigtermAttempts)
			break
		}
		// The SIGTERM found worker-0 between tasks: try again.
	}
	enqueueAll(nInvoices/2+1, nInvoices)

	// worker-1, 10 s: its running tasks finish.
	w1 := s.workers[1]
	sigterm(w1, 10*time.Second)
	w1.start()
	w1.waitReady()

	s.waitCompleted(tasks.QueueDefault, pdfIDs, 180*time.Second)
	remInfos := s.waitCompleted(tasks.QueueLow, remIDs, 180*time.Second)
	retried := 0
	for _, ti := range remInfos {
		if ti.Retried > 0 {
			retried++
		}
	}
	mails, err := readOutboxes(s.outboxes...)
	if err != nil {
		t.Fatal(err)
	}
	perDay := map[string]int{}
	for _, m := range mails {
		perDay[fmt.Sprintf("%s/%d/%s", m.tenantID, m.invoiceID, m.day)]++
	}
	for k, n := range perDay {
		if n != 1 {
			t.Errorf("reminder %s sent %d times, want once", k, n)
		}
	}
	if want := len(tenants) * nInvoices; len(perDay) != want || len(mails) != want {
		t.Errorf("%d reminder emails for %d distinct reminders, want %d of each", len(mails), len(perDay), want)
	}
	for _, tn := range tenants {
		rows, distinct, files := s.documentCounts(tn)
		if rows != nInvoices || distinct != nInvoices || files != nInvoices {
			t.Errorf("tenant %s: %d document rows (%d distinct), %d files; want %d", tn.Slug, rows, distinct, files, nInvoices)
		}
	}
	t.Logf("SIGTERMs under load: %d PDF and %d reminder tasks completed (%d reminders needed a retry), %d emails, none twice",
		len(pdfIDs), len(remIDs), retried, len(mails))
}
