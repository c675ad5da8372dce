package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
)

// TestClusterQueueShards runs the built binaries with QUEUE_SHARDS=3 on a
// real Redis Cluster (three masters, three replicas): the three queues of
// each class hash to slots on three different masters (CLUSTER KEYSLOT and
// the cluster's slot map); tenants whose tasks land on different shards of
// default all get their PDFs rendered and their reminders sent (by request
// and by the scheduler's sweep, whose fan-out puts each tenant's task in
// its own shard of low); GET /v1/tasks/{id} finds every task in its shard
// and hides it from other tenants; and the fair admin routes (queue view,
// pause, resume, drain) work on a tenant of a shard other than shard 0.
// It runs within one UTC day (testenv.OneUTCDay): on the next, a sweep
// reminds both overdue invoices of each tenant again, and a reminder of
// the paused tenant would wait beside its render.
func TestClusterQueueShards(t *testing.T) {
	t.Parallel()
	testenv.OneUTCDay(t, 5*time.Minute)
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{})
	s := newStack(t, stackOptions{workers: 2, concurrency: 4, cluster: c, sweepCron: "@every 2s",
		env: map[string]string{"QUEUE_SHARDS": "3"}})
	layout := s.layout()
	ctx := context.Background()

	// Where the shards live: every shard of a class on its own master.
	masterOf := map[string]string{}
	for _, q := range layout.Queues() {
		m, slot, err := c.MasterOf(ctx, "asynq:{"+q+"}:pending")
		if err != nil {
			t.Fatal(err)
		}
		ks, err := s.rdb.ClusterKeySlot(ctx, "fair:{"+q+"}:msg").Result()
		if err != nil || int(ks) != slot {
			t.Fatalf("CLUSTER KEYSLOT of queue %s: %d, %v; the slot map says %d", q, ks, err, slot)
		}
		masterOf[q] = m.Addr()
		t.Logf("queue %s: slot %d, master %s", q, slot, m.Addr())
	}
	for _, class := range tasks.Queues {
		masters := map[string]bool{}
		for i := range 3 {
			masters[masterOf[tasks.ShardQueue(class, i)]] = true
		}
		if len(masters) != 3 {
			t.Errorf("the 3 shards of %s are on %d masters: %v", class, len(masters), masters)
		}
	}

	// Tenants until each shard of default has one (the shard follows the
	// tenant id, which is random).
	byShard := map[string]tenantRef{}
	for batch := 0; len(byShard) < 3; batch++ {
		if batch == 6 {
			t.Fatalf("24 tenants cover only the shards %v", byShard)
		}
		for _, tn := range s.provision(tenantSlugs(fmt.Sprintf("shards%d", batch), 4), tenantName) {
			if q := layout.Queue(tasks.QueueDefault, tn.ID); byShard[q].ID == "" {
				byShard[q] = tn
			}
		}
	}
	queues := layout.Queues()[3:6] // default's shards, in order
	for _, q := range queues {
		s.seed(byShard[q], invoiceSeed{overdue: 1, sent: 1, lines: 2})
	}

	// A render and a reminder per tenant, each in the tenant's shard.
	pdfs := map[string][]string{} // queue -> task ids
	for _, q := range queues {
		tn := byShard[q]
		pdf := s.mustPost(tn, "pdf", 1)
		if pdf.Queue != q {
			t.Errorf("PDF of %s in queue %s, want its shard %s", tn.Slug, pdf.Queue, q)
		}
		pdfs[pdf.Queue] = append(pdfs[pdf.Queue], pdf.TaskID)
		rem := s.mustPost(tn, "reminders", 1)
		if want := layout.Queue(tasks.QueueLow, tn.ID); rem.Queue != want {
			t.Errorf("reminder of %s in queue %s, want %s", tn.Slug, rem.Queue, want)
		}
		pdfs[rem.Queue] = append(pdfs[rem.Queue], rem.TaskID)
	}
	for q, ids := range pdfs {
		s.waitCompleted(q, ids, 120*time.Second)
	}
	for i, q := range queues {
		tn, other := byShard[q], byShard[queues[(i+1)%3]]
		id := pdfs[q][0]
		if st := s.taskState(tn, id); st != "completed" {
			t.Errorf("GET /v1/tasks/%s as %s: %s, want completed", id, tn.Slug, st)
		}
		if st := s.taskState(other, id); st != "http 404" {
			t.Errorf("GET /v1/tasks/%s as another tenant: %s, want http 404", id, st)
		}
		if rows, _, files := s.documentCounts(tn); rows != 1 || files != 1 {
			t.Errorf("%s after one PDF: %d document rows, %d files", tn.Slug, rows, files)
		}
	}
	// The sweep (every 2 s) marks each tenant's sent invoice overdue and
	// reminds both of its overdue invoices: 2 emails per tenant.
	eventually(t, 120*time.Second, 250*time.Millisecond, "reminders of the 6 overdue invoices", func() error {
		if n := countEML(t, s.outboxes); n < 6 {
			return fmt.Errorf("%d .eml files", n)
		}
		return nil
	})

	// Fair admin routes on a tenant of shard 1.
	tn, q := byShard[queues[1]], queues[1]
	admin := func(path string) map[string]any {
		t.Helper()
		status, body := s.api(http.MethodPost, "/admin/tenants/"+tn.ID+"/queue/"+path, "", adminToken, nil)
		if status != http.StatusOK {
			t.Fatalf("POST queue/%s of %s: %d %s", path, tn.Slug, status, body)
		}
		var v map[string]any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("POST queue/%s: %s: %v", path, body, err)
		}
		return v
	}
	admin("pause")
	held := s.mustPost(tn, "pdf", 2)
	// The workers' scheduler sweeps every 2 s: a sweep while the tenant is
	// paused adds its overdue check (in its shard of low) to what waits,
	// beside the render.
	if v := s.queue(s.enqueue, tn); !v.Paused || v.WaitingByType[tasks.TypeInvoicePDF] != 1 ||
		v.Waiting != v.WaitingByType[tasks.TypeInvoicePDF]+v.WaitingByType[tasks.TypeInvoicesOverdue] {
		t.Errorf("paused tenant's queue: %+v, want its new render waiting (and a sweep's overdue check if one came)", v)
	}
	status, body := s.api(http.MethodGet, "/admin/tenants/"+tn.ID+"/queue", "", adminToken, nil)
	var view struct {
		Queues []queueStat `json:"queues"`
	}
	if err := json.Unmarshal(body, &view); status != http.StatusOK || err != nil {
		t.Fatalf("queue view: %d %s %v", status, body, err)
	}
	i := slices.IndexFunc(view.Queues, func(e queueStat) bool { return e.Queue == q })
	if i < 0 || view.Queues[i].Waiting != 1 {
		t.Errorf("queue view of %s: %s; want %s with 1 waiting", tn.Slug, body, q)
	}
	if st := s.taskState(tn, held.TaskID); st != "pending" {
		t.Errorf("waiting render: state %s, want pending", st)
	}
	admin("resume")
	s.waitCompleted(q, []string{held.TaskID}, 120*time.Second)

	admin("pause")
	render := s.mustPost(tn, "pdf", 1) // a new render (the first one finished)
	// The workers' scheduler sweeps every 2 s: a sweep during the pause
	// adds the tenant's overdue check to its backlog, which the drain
	// discards too. What waited is discarded, the render among it.
	d := admin("drain")
	if n, _ := d["discarded"].(float64); n < 1 {
		t.Errorf("drain: %v, want what waited (the render, and a sweep's check if one came) discarded", d)
	}
	if st := s.taskState(tn, render.TaskID); st == "pending" || st == "active" || st == "completed" {
		t.Errorf("drained render: state %s, want it gone", st)
	}
	admin("resume")
	if v := s.queue(s.enqueue, tn); v.Paused || v.Waiting != 0 {
		t.Errorf("after drain and resume: %+v", v)
	}

	for _, q := range queues {
		info, err := s.inspector.GetQueueInfo(q)
		if err != nil || info.Completed == 0 {
			t.Errorf("queue %s (master %s): %+v, %v; want completed tasks", q, masterOf[q], info, err)
		}
	}
	counts, err := s.counts()
	if err != nil {
		t.Fatal(err)
	}
	if counts.archived > 0 {
		t.Errorf("archived tasks: %+v; %v", counts, s.archivedErrors())
	}
}

// queueStat is one queue's figures in GET /admin/tenants/{id}/queue.
type queueStat struct {
	Queue   string `json:"queue"`
	Waiting int    `json:"waiting"`
}
