package integration

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
)

// TestClusterStory runs the main story on a real Redis Cluster (three
// masters, three replicas; REDIS_URL=redis-cluster://...) with the built
// binaries: provision a tenant (tenant:migrate), render a PDF, send a
// reminder over HTTP and let the scheduler's sweep send the others, read
// the dashboard, delete the tenant (tenant:destroy), with two workers.
func TestClusterStory(t *testing.T) {
	t.Parallel()
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{})
	s := newStack(t, stackOptions{workers: 2, concurrency: 4, cluster: c, sweepCron: "@every 2s"})
	tn := s.provision(tenantSlugs("cluster", 1), tenantName)[0]
	s.seed(tn, invoiceSeed{overdue: 2, sent: 2, lines: 2})

	pdf := s.mustPost(tn, "pdf", 1)
	s.waitCompleted(pdf.Queue, []string{pdf.TaskID}, 90*time.Second)
	if rows, _, files := s.documentCounts(tn); rows != 1 || files != 1 {
		t.Errorf("after one PDF: %d document rows, %d files", rows, files)
	}
	status, body, err := httpDo(context.Background(), http.MethodGet, s.enqueue.url("/v1/invoices/1/pdf"), tn.host(), tn.Key, nil)
	if err != nil || status != http.StatusOK || len(body) < 100 {
		t.Errorf("GET the PDF: %d, %d bytes, %v", status, len(body), err)
	}

	reminder := s.mustPost(tn, "reminders", 1)
	s.waitCompleted(reminder.Queue, []string{reminder.TaskID}, 90*time.Second)
	// The sweep (every 2 s, one per tick across both workers) marks the
	// sent invoices overdue and reminds every overdue invoice: 4 emails.
	eventually(t, 120*time.Second, 250*time.Millisecond, "reminders of the 4 overdue invoices", func() error {
		if n := countEML(t, s.outboxes); n < 4 {
			return fmt.Errorf("%d .eml files", n)
		}
		return nil
	})
	// The sweep's reminders can be sent before asynq records the sweep
	// itself as completed: wait for that too.
	eventually(t, 60*time.Second, 250*time.Millisecond, "a completed "+tasks.TypeSweepOverdue+" task on the cluster", func() error {
		sweeps, err := s.inspector.ListCompletedTasks(tasks.QueueLow)
		if err != nil {
			return fmt.Errorf("completed tasks of %s: %w", tasks.QueueLow, err)
		}
		if countType(sweeps, tasks.TypeSweepOverdue) == 0 {
			return errNotYet
		}
		return nil
	})

	// The dashboard (asynqmon on the cluster client): queues and Redis info.
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+adminToken))
	for _, path := range []string{"/admin/dashboard/api/queues", "/admin/dashboard/api/redis_info"} {
		req, _ := http.NewRequest(http.MethodGet, s.enqueue.url(path), nil)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("GET %s: %v", path, err)
			continue
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s on the cluster: %d", path, resp.StatusCode)
		}
	}

	status, body = s.api(http.MethodDelete, "/admin/tenants/"+tn.ID, "", adminToken, nil)
	if status != http.StatusAccepted {
		t.Fatalf("delete: %d %s", status, body)
	}
	if st, _, _ := s.post(context.Background(), tn, "pdf", 2); st != http.StatusNotFound {
		t.Errorf("POST pdf of the deleted tenant: status %d, want 404 (cache invalidated on the cluster)", st)
	}
	eventually(t, 120*time.Second, 250*time.Millisecond, "catalog row and schema gone", func() error {
		var rows int
		var schema bool
		err := s.db.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM tenancy.tenants WHERE id = $1),
			EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $2)`, tn.ID, tn.Schema).Scan(&rows, &schema)
		if err != nil {
			return err
		}
		if rows != 0 || schema {
			return fmt.Errorf("row %d, schema %v", rows, schema)
		}
		return nil
	})
	for _, p := range append([]*proc{s.enqueue}, s.workers...) {
		if err := p.waitStatus("/readyz", http.StatusOK, 30*time.Second); err != nil {
			t.Errorf("%s: %v", p.name, err)
		}
	}
	c0, err := s.counts()
	if err != nil {
		t.Fatal(err)
	}
	if c0.archived > 0 {
		t.Errorf("archived tasks on the cluster: %+v; %v", c0, s.archivedErrors())
	}
}

// countEML counts the .eml files in the outboxes.
func countEML(t *testing.T, dirs []string) int {
	t.Helper()
	n := 0
	for _, d := range dirs {
		_ = filepath.WalkDir(d, func(path string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() && filepath.Ext(path) == ".eml" {
				n++
			}
			return nil
		})
	}
	return n
}

func countType(infos []*asynq.TaskInfo, typ string) int {
	n := 0
	for _, ti := range infos {
		if ti.Type == typ {
			n++
		}
	}
	return n
}

// TestClusterMasterKilledMidLoad kills (SIGKILL) the master that holds the
// default queue's slot while PDF requests flow (about 100/s). The cluster
// promotes its replica (cluster-node-timeout 1.5 s); the processes recover
// on their own: /readyz 200, enqueues accepted again, and every task
// whose request was sent after the failover and acknowledged completes. Replication is asynchronous,
// so tasks acknowledged (202) shortly before the kill may be lost with the
// master: the test counts and logs them, it does not require zero.
func TestClusterMasterKilledMidLoad(t *testing.T) {
	t.Parallel()
	const nInvoices = 4000
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{NodeTimeout: 1500 * time.Millisecond})
	s := newStack(t, stackOptions{workers: 1, concurrency: 4, cluster: c})
	tn := s.provision(tenantSlugs("failover", 1), tenantName)[0]
	s.seed(tn, invoiceSeed{overdue: nInvoices, lines: 1})

	load := startPacedLoad(t, s, tn, nInvoices)
	load.waitAccepted(t, 300, 60*time.Second, "load under way")

	victim := c.KillMasterOf(t, "asynq:{"+tasks.QueueDefault+"}:pending")
	killedAt := time.Now()
	c.WaitHealthyT(t)
	failedOver := time.Since(killedAt)
	t.Logf("replica promoted: cluster healthy again %.1fs after master %s was killed", failedOver.Seconds(), victim.Addr())

	s.waitRecovered(t, 90*time.Second, "the failover")
	ready := time.Since(killedAt)
	load.waitAccepted(t, 200, 90*time.Second, "enqueues accepted again")
	acceptingAgain := time.Since(killedAt)
	acks, refused := load.finish()
	refusedCopy := fmt.Sprint(refused)
	healedAt := killedAt.Add(failedOver)
	var ids, afterIDs []string
	for _, a := range acks {
		ids = append(ids, a.id)
		if a.sent.After(healedAt) {
			afterIDs = append(afterIDs, a.id)
		}
	}
	// Every task whose request was sent after the failover completes.
	// Not every one answered after it: a request sent before the kill may
	// have written its task to the old master (not yet replicated) and
	// its answer reached this process only after the failover, when the
	// machine is loaded; that task may be lost with the master.
	s.waitCompleted(tasks.QueueDefault, afterIDs, 300*time.Second)
	// The others either complete or are gone with the dead master; wait
	// until nothing is left to run, then count.
	var byState map[string]int
	eventually(t, 300*time.Second, time.Second, "every acknowledged task completed or lost", func() error {
		var err error
		_, byState, err = s.taskStates(tasks.QueueDefault, ids)
		if err != nil {
			return err
		}
		if byState["completed"]+byState["missing"]+byState["archived"] != len(ids) {
			return fmt.Errorf("%v", byState)
		}
		return nil
	})
	lost := byState["missing"] + byState["archived"]
	infos, _, _ := s.taskStates(tasks.QueueDefault, ids)
	var lostAt []string
	for _, a := range acks {
		if infos[a.id] == nil || infos[a.id].State != asynq.TaskStateCompleted {
			lostAt = append(lostAt, fmt.Sprintf("%+.2fs", a.at.Sub(killedAt).Seconds()))
		}
	}
	sort.Strings(lostAt)
	t.Logf("failover: %d enqueues acknowledged (202), %d completed, %d lost (%.2f%%; acknowledged at, relative to the kill: %v); refused by status: %s; "+
		"cluster healthy %.1fs, /readyz 200 %.1fs, 200 more enqueues accepted %.1fs after the kill",
		len(ids), byState["completed"], lost, 100*float64(lost)/float64(max(len(ids), 1)), lostAt, refusedCopy,
		failedOver.Seconds(), ready.Seconds(), acceptingAgain.Seconds())
	if rows, distinct, files := s.documentCounts(tn); rows != distinct || files != rows || rows < byState["completed"] {
		t.Errorf("%d document rows (%d distinct), %d files for %d completed tasks", rows, distinct, files, byState["completed"])
	}
}
