package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/tasks"
)

// TestDashboardRunsTaskInItsOwnTenant: tasks of two tenants with the same
// invoice ids are archived (their invoices did not exist yet), the
// invoices are then written, one tenant is suspended, and an operator runs
// the archived tasks again from the dashboard: one on its own, then the
// rest with "run all". The suspended tenant's tasks are held, not run,
// until it is resumed; then every task renders its own tenant's invoice,
// never the other's, and fair dispatch, which those runs bypass, keeps no
// trace of them (P16 in docs/architecture.md).
func TestDashboardRunsTaskInItsOwnTenant(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{concurrency: 2, env: map[string]string{"DASHBOARD_WRITABLE": "true"}})
	tns := s.provision([]string{"dash-a", "dash-b"}, tenantName)

	client := asynq.NewClient(asynq.RedisClientOpt{Addr: s.redis.Addr()})
	t.Cleanup(func() { _ = client.Close() })
	enq := tasks.NewEnqueuer(client, s.inspector, nil)
	ctx := context.Background()

	// Each tenant asks for invoices 1-3 before it has them: the worker
	// archives each task with "invoice not found".
	const invoices = 3
	type archived struct {
		tn          tenantRef
		invoice     int
		id, queue   string
		description string
	}
	var all []archived
	for _, tn := range tns {
		for i := 1; i <= invoices; i++ {
			res, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: int64(i)})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, archived{tn: tn, invoice: i, id: res.Info.ID, queue: res.Info.Queue,
				description: fmt.Sprintf("%s's invoice %d (task %s)", tn.Slug, i, res.Info.ID)})
		}
	}
	eventually(t, 60*time.Second, 100*time.Millisecond, "every task archived", func() error {
		for _, a := range all {
			info, err := s.inspector.GetTaskInfo(a.queue, a.id)
			if err != nil {
				return fmt.Errorf("%s: %w", a.description, err)
			}
			if info.State != asynq.TaskStateArchived || !strings.Contains(info.LastErr, "invoice not found") {
				return fmt.Errorf("%s: %s %q", a.description, info.State, info.LastErr)
			}
		}
		return nil
	})

	// Now both tenants have invoices 1-3, each with its own data.
	for _, tn := range tns {
		s.seed(tn, invoiceSeed{overdue: invoices, lines: 2})
	}

	dashboard := func(path string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, s.enqueue.url("/admin/dashboard/api"+path), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", basicAuth(adminToken))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST %s: %d", path, resp.StatusCode)
		}
	}
	held, other := tns[0], tns[1]
	if status, body := s.api(http.MethodPost, "/admin/tenants/"+held.ID+"/suspend", "", adminToken, nil); status != http.StatusOK {
		t.Fatalf("suspend %s: %d %s", held.Slug, status, body)
	}
	first := all[len(all)-1] // the other tenant's last task, on its own
	dashboard("/queues/" + first.queue + "/archived_tasks/" + first.id + ":run")
	queues := map[string]bool{}
	for _, a := range all {
		queues[a.queue] = true
	}
	for q := range queues {
		dashboard("/queues/" + q + "/archived_tasks:run_all")
	}

	completed := func(tn tenantRef) func() error {
		return func() error {
			for _, a := range all {
				if a.tn.ID != tn.ID {
					continue
				}
				if st := s.taskState(a.tn, a.id); st != "completed" {
					return fmt.Errorf("%s: %s", a.description, st)
				}
			}
			return nil
		}
	}
	eventually(t, 60*time.Second, 100*time.Millisecond, other.Slug+"'s tasks run again and completed", completed(other))
	// The suspended tenant's tasks were dequeued and parked, not run:
	// asynq let them go, and the dispatcher keeps them.
	time.Sleep(time.Second)
	gone := 0
	for _, a := range all {
		if a.tn.ID != held.ID {
			continue
		}
		info, err := s.inspector.GetTaskInfo(a.queue, a.id)
		switch {
		case errors.Is(err, asynq.ErrTaskNotFound):
			gone++
		case err != nil || info.State == asynq.TaskStateCompleted:
			t.Errorf("%s while its tenant is suspended: %+v %v, want it held", a.description, info, err)
		}
	}
	if v := s.queue(s.enqueue, held); v.Parked < gone {
		t.Errorf("%d of %s's tasks gone from asynq, but its queue %+v holds %d parked: want them parked", gone, held.Slug, v, v.Parked)
	}
	var rendered int
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM `+held.Schema+`.invoice_documents`).Scan(&rendered); err != nil || rendered != 0 {
		t.Errorf("%d documents (%v) of the suspended tenant, want none", rendered, err)
	}
	if status, body := s.api(http.MethodPost, "/admin/tenants/"+held.ID+"/resume", "", adminToken, nil); status != http.StatusOK {
		t.Fatalf("resume %s: %d %s", held.Slug, status, body)
	}
	// A parked task comes back once its hand-back to asynq can no longer
	// arrive, 45 s after it was parked (docs/guarantees.md, "Parking").
	eventually(t, 90*time.Second, 100*time.Millisecond, held.Slug+"'s tasks run after it resumed", completed(held))
	for _, a := range all {
		foreign := tns[1-a.tn.N]
		status, pdf := s.api(http.MethodGet, fmt.Sprintf("/v1/invoices/%d/pdf", a.invoice), a.tn.host(), a.tn.Key, nil)
		if status != http.StatusOK {
			t.Fatalf("%s: GET its PDF: %d %s", a.description, status, pdf)
		}
		text := storyPDFText(t, fmt.Sprintf("%s-%d", a.tn.Slug, a.invoice), pdf)
		for _, want := range []string{a.tn.Name, lineText(a.tn.N, a.invoice, 1), fmt.Sprintf("INV-%05d", a.invoice)} {
			if !strings.Contains(text, want) {
				t.Errorf("%s: the PDF lacks %q:\n%s", a.description, want, text)
			}
		}
		for _, f := range []string{foreign.Name, lineText(foreign.N, a.invoice, 1)} {
			if strings.Contains(text, f) {
				t.Errorf("%s: the PDF holds the other tenant's %q", a.description, f)
			}
		}
	}

	// The runs bypassed fair dispatch; its view of both tenants is empty.
	for _, tn := range tns {
		if v := s.queue(s.enqueue, tn); v.Waiting != 0 || v.Admitted != 0 || v.Running != 0 || v.Parked != 0 {
			t.Errorf("%s's queue after the dashboard's runs: %+v, want nothing waiting, admitted, running or parked", tn.Slug, v)
		}
	}
	checkFairKeys(t, s)
}
