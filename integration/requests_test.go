package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
)

// enqueued is a 202 answer of the enqueue service.
type enqueued struct {
	TaskID   string `json:"task_id"`
	Queue    string `json:"queue"`
	State    string `json:"state"`
	Existing bool   `json:"existing"`
}

// post enqueues kind ("pdf" or "reminders") for invoice id of tn and returns
// the status and, for a 202, the task.
func (s *stack) post(ctx context.Context, tn tenantRef, kind string, id int) (int, enqueued, error) {
	status, body, err := httpDo(ctx, http.MethodPost, s.enqueue.url(fmt.Sprintf("/v1/invoices/%d/%s", id, kind)), tn.host(), tn.Key, nil)
	if err != nil {
		return 0, enqueued{}, err
	}
	var e enqueued
	if status == http.StatusAccepted {
		if err := json.Unmarshal(body, &e); err != nil || e.TaskID == "" {
			return status, e, fmt.Errorf("202 body %q: %v", body, err)
		}
	}
	return status, e, nil
}

// mustPost is post that fails the test unless the answer is 202.
func (s *stack) mustPost(tn tenantRef, kind string, id int) enqueued {
	s.t.Helper()
	status, e, err := s.post(context.Background(), tn, kind, id)
	if err != nil || status != http.StatusAccepted {
		s.t.Fatalf("POST %s %s/%d: status %d, %v", kind, tn.Slug, id, status, err)
	}
	return e
}

// rerender asks for the renders of invoices 1..n of each tenant, one bulk
// request per tenant, and returns the task ids. With change it first
// changes every invoice of the tenants (their notes), so that each task
// renders again: a task for an unchanged invoice completes without a
// render, too quickly for a test that needs the workers busy.
func (s *stack) rerender(tenants []tenantRef, n int, change bool) []string {
	s.t.Helper()
	ctx := context.Background()
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i + 1
	}
	var out []string
	for _, tn := range tenants {
		if change {
			_, err := s.db.Exec(ctx, `UPDATE `+pgx.Identifier{tn.Schema, "invoices"}.Sanitize()+` SET notes = $1`,
				fmt.Sprintf("Notiz%02d %d", tn.N, time.Now().UnixNano()))
			if err != nil {
				s.t.Fatalf("change the invoices of %s: %v", tn.Slug, err)
			}
		}
		status, body, err := bulkPDF(ctx, s.enqueue, tn, ids)
		var res struct {
			Tasks []enqueued `json:"tasks"`
		}
		if err == nil && status == http.StatusAccepted {
			err = json.Unmarshal(body, &res)
		}
		if err != nil || status != http.StatusAccepted || len(res.Tasks) != n {
			s.t.Fatalf("bulk render of %s: %d %s %v", tn.Slug, status, body, err)
		}
		for _, e := range res.Tasks {
			out = append(out, e.TaskID)
		}
	}
	return out
}

// taskStates returns the state of each task (queue/id), "missing" for a
// task that does not exist.
func (s *stack) taskStates(queue string, ids []string) (map[string]*asynq.TaskInfo, map[string]int, error) {
	infos := map[string]*asynq.TaskInfo{}
	byState := map[string]int{}
	for _, id := range ids {
		ti, err := s.inspector.GetTaskInfo(queue, id)
		if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
			byState["missing"]++
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		infos[id] = ti
		byState[ti.State.String()]++
	}
	return infos, byState, nil
}

// waitCompleted waits until every task in ids (of queue) is completed and
// returns their final infos. A task archived on the way fails the test.
func (s *stack) waitCompleted(queue string, ids []string, timeout time.Duration) map[string]*asynq.TaskInfo {
	s.t.Helper()
	var infos map[string]*asynq.TaskInfo
	eventually(s.t, timeout, 250*time.Millisecond, fmt.Sprintf("%d tasks completed", len(ids)), func() error {
		var byState map[string]int
		var err error
		infos, byState, err = s.taskStates(queue, ids)
		if err != nil {
			return err
		}
		if byState["archived"] > 0 {
			return fmt.Errorf("archived tasks (will not complete): %v; %v", byState, s.archivedErrors())
		}
		if byState["completed"] != len(ids) {
			return fmt.Errorf("%v", byState)
		}
		return nil
	})
	return infos
}

// documentCounts returns the rows of invoice_documents (and how many
// distinct invoices they cover) and the PDF files of tn.
func (s *stack) documentCounts(tn tenantRef) (rows, distinct, files int) {
	s.t.Helper()
	err := s.db.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT invoice_id) FROM `+
		pgx.Identifier{tn.Schema, "invoice_documents"}.Sanitize()).Scan(&rows, &distinct)
	if err != nil {
		s.t.Fatalf("count documents of %s: %v", tn.Slug, err)
	}
	matches, _ := filepath.Glob(filepath.Join(s.docsDir, tn.ID, "invoices", "*.pdf"))
	return rows, distinct, len(matches)
}

// tenantSlugs returns n slugs prefix-00, prefix-01, ...
func tenantSlugs(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%02d", prefix, i)
	}
	return out
}
