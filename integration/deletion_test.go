package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/tasks"
)

// TestTenantDeletedUnderLoad deletes one of three tenants while the queue
// holds PDF tasks of all three: the deleted tenant's tasks that had not
// started are discarded with the deletion request and none of its tasks
// is retried (a task running at the deletion is archived after one
// attempt with a reason naming the tenant: P5 in docs/architecture.md);
// its schema, PDFs and catalog row
// are gone, its audit entries stay, with exactly one "deletion requested"
// and one "deletion completed"; the other tenants' tasks all complete.
func TestTenantDeletedUnderLoad(t *testing.T) {
	t.Parallel()
	const nInvoices = 300
	ctx := context.Background()
	s := newStack(t, stackOptions{workers: 2, concurrency: 4})
	tenants := s.provision(tenantSlugs("del", 3), tenantName)
	for _, tn := range tenants {
		s.seed(tn, invoiceSeed{overdue: nInvoices, lines: 20})
	}
	victim, others := tenants[0], tenants[1:]

	// The queue is paused while the tasks are enqueued, so that a backlog
	// builds up whatever the relative speed of enqueueing (each request
	// checks its invoice in the tenant's schema) and rendering.
	if err := s.inspector.PauseQueue(tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	taskTenant := map[string]string{}
	for id := 1; id <= nInvoices; id++ {
		for _, tn := range tenants {
			taskTenant[s.mustPost(tn, "pdf", id).TaskID] = tn.ID
		}
	}
	if err := s.inspector.UnpauseQueue(tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, 20*time.Millisecond, "load under way", func() error {
		info, err := s.inspector.GetQueueInfo(tasks.QueueDefault)
		if err != nil {
			return err
		}
		if info.Completed < 30 {
			return fmt.Errorf("%d completed", info.Completed)
		}
		return nil
	})

	status, body := s.api(http.MethodDelete, "/admin/tenants/"+victim.ID, "", adminToken, nil)
	if status != http.StatusAccepted {
		t.Fatalf("delete %s: status %d, %s", victim.Slug, status, body)
	}
	var del struct {
		TaskID string `json:"task_id"`
	}
	if err := json.Unmarshal(body, &del); err != nil || del.TaskID == "" {
		t.Fatalf("delete body %s: %v", body, err)
	}

	// Its routes stop at once.
	if st, _, _ := s.post(ctx, victim, "pdf", 1); st != http.StatusNotFound {
		t.Errorf("POST pdf of the deleted tenant: status %d, want 404", st)
	}

	// Its backlog went with the deletion request: the tasks that had not
	// started were discarded (fair dispatch), so none is left to be run,
	// retried or archived; the request's audit entry counts them.
	var discarded int
	if err := s.db.QueryRow(ctx, `SELECT COALESCE((detail->>'discarded')::int, 0) FROM tenancy.audit_log
		WHERE tenant_id = $1 AND action = $2`, victim.ID, tenancy.ActionDeletionRequested).Scan(&discarded); err != nil {
		t.Fatal(err)
	}
	if discarded < 50 {
		t.Fatalf("only %d of the victim's tasks were discarded by the deletion; the test needs a backlog", discarded)
	}

	s.waitCompleted(tasks.QueueCritical, []string{del.TaskID}, 60*time.Second)
	s.waitQueue(tasks.QueueDefault, 180*time.Second)

	var otherIDs, victimIDs []string
	for id, tenant := range taskTenant {
		if tenant == victim.ID {
			victimIDs = append(victimIDs, id)
		} else {
			otherIDs = append(otherIDs, id)
		}
	}
	s.waitCompleted(tasks.QueueDefault, otherIDs, 10*time.Second)
	infos, byState, err := s.taskStates(tasks.QueueDefault, victimIDs)
	if err != nil {
		t.Fatal(err)
	}
	// Every task of the victim either ran before the deletion, was running
	// at it (then completed, or archived after one attempt naming the
	// tenant), or was discarded: none was retried.
	for id, ti := range infos {
		switch {
		case ti.State == asynq.TaskStateCompleted:
		case ti.State == asynq.TaskStateArchived && ti.Retried == 0 && strings.Contains(ti.LastErr, victim.ID):
		default:
			t.Errorf("task %s of the deleted tenant: state %s, retried %d, last error %q", id, ti.State, ti.Retried, ti.LastErr)
		}
	}
	if byState["missing"] < discarded {
		t.Errorf("%d of the victim's tasks gone, fewer than the %d discarded", byState["missing"], discarded)
	}
	t.Logf("deleted tenant: %d tasks, %d discarded by the deletion; final states: %v", len(victimIDs), discarded, byState)

	// Schema, documents and catalog row gone; the audit entries stay: the
	// request (who, when) and the completion (when, what was removed), one
	// each.
	var schemas, rows, requested, completed int
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = $1`, victim.Schema).Scan(&schemas); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM tenancy.tenants WHERE id = $1`, victim.ID).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE action = $2), count(*) FILTER (WHERE action = $3)
		FROM tenancy.audit_log WHERE tenant_id = $1`, victim.ID, tenancy.ActionDeletionRequested, tenancy.ActionDeletionCompleted).Scan(&requested, &completed); err != nil {
		t.Fatal(err)
	}
	if schemas != 0 || rows != 0 || requested != 1 || completed != 1 {
		t.Errorf("after the deletion: schema present %d, catalog rows %d, deletion requested / completed audit entries %d / %d; want 0, 0, 1 / 1",
			schemas, rows, requested, completed)
	}
	var leftover []string
	_ = filepath.WalkDir(filepath.Join(s.docsDir, victim.ID), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			leftover = append(leftover, path)
		}
		return nil
	})
	if len(leftover) > 0 {
		t.Errorf("the deleted tenant still has %d files in the document store, e.g. %s", len(leftover), leftover[0])
	}

	for _, tn := range others {
		rows, distinct, files := s.documentCounts(tn)
		if rows != nInvoices || distinct != nInvoices || files != nInvoices {
			t.Errorf("tenant %s: %d document rows (%d distinct), %d files; want %d", tn.Slug, rows, distinct, files, nInvoices)
		}
		if st, _, err := s.post(ctx, tn, "pdf", 1); err != nil || st != http.StatusAccepted {
			t.Errorf("tenant %s after the deletion: POST pdf status %d, %v", tn.Slug, st, err)
		}
	}
}
