package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/tasks"
)

// TestDocumentsSweepOfTheWorkersScheduler: a worker binary with
// DOCUMENTS_SWEEP_CRON='@every 2s' prunes, through its own scheduler
// (sweep:documents fanning out one documents:prune per active tenant,
// through fair admission), the PDF of an invoice deleted after its render,
// for two tenants, and keeps the PDFs still recorded; each tenant's prune
// shows up in asynq as a completed documents:prune task of its own (task id
// documents:prune:<tenant>:<tick>, payload naming the tenant) whose result
// counts the removal.
func TestDocumentsSweepOfTheWorkersScheduler(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStack(t, stackOptions{workerEnv: func(int) map[string]string {
		return map[string]string{"SCHEDULER_ENABLED": "true", "DOCUMENTS_SWEEP_CRON": "@every 2s"}
	}})
	tenants := s.provision(tenantSlugs("docsweep", 2), tenantName)
	const kept1, gone, kept2 = 1, 2, 3
	var ids []string
	for _, tn := range tenants {
		s.seed(tn, invoiceSeed{overdue: 3, lines: 2})
		for id := kept1; id <= kept2; id++ {
			ids = append(ids, s.mustPost(tn, "pdf", id).TaskID)
		}
	}
	s.waitCompleted(tasks.QueueDefault, ids, 60*time.Second)

	stored := func(tn tenantRef, id int64) bool {
		_, err := os.Stat(filepath.Join(s.docsDir, tn.ID, filepath.FromSlash(invoice.DocumentKey(id))))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		return err == nil
	}
	for _, tn := range tenants {
		for id := int64(kept1); id <= kept2; id++ {
			if !stored(tn, id) {
				t.Fatalf("%s: the PDF of invoice %d is not stored after its render", tn.Slug, id)
			}
		}
		// The app deletes the invoice after its render: its document row
		// goes with it (ON DELETE CASCADE), its file stays until a prune.
		if _, err := s.db.Exec(ctx, `DELETE FROM `+pgx.Identifier{tn.Schema, "invoices"}.Sanitize()+` WHERE id = $1`, gone); err != nil {
			t.Fatal(err)
		}
	}
	deleted := time.Now()

	eventually(t, 20*time.Second, 100*time.Millisecond, "the deleted invoices' PDFs pruned", func() error {
		for _, tn := range tenants {
			if stored(tn, gone) {
				return fmt.Errorf("%s: %w", tn.Slug, errNotYet)
			}
		}
		return nil
	})
	for _, tn := range tenants {
		if !stored(tn, kept1) || !stored(tn, kept2) {
			t.Errorf("%s: a recorded PDF was removed (invoice %d stored %v, invoice %d stored %v)",
				tn.Slug, kept1, stored(tn, kept1), kept2, stored(tn, kept2))
		}
	}

	// Each tenant's prune is a documents:prune task of its own, in the low
	// queue, completed, one of which removed the deleted invoice's PDF.
	var infos []*asynq.TaskInfo
	eventually(t, 10*time.Second, 100*time.Millisecond, "a completed documents:prune per tenant that removed its PDF", func() error {
		infos = nil
		for page := 1; ; page++ {
			got, err := s.inspector.ListCompletedTasks(tasks.QueueLow, asynq.Page(page), asynq.PageSize(1000))
			if err != nil {
				return err
			}
			infos = append(infos, got...)
			if len(got) < 1000 {
				break
			}
		}
		for _, tn := range tenants {
			removed := false
			for _, ti := range infos {
				if ti.Type != tasks.TypeDocumentsPrune {
					continue
				}
				var p tasks.DocumentsPrune
				if err := json.Unmarshal(ti.Payload, &p); err != nil {
					return fmt.Errorf("payload of %s: %w", ti.ID, err)
				}
				if p.TenantID != tn.ID {
					continue
				}
				if want := tasks.TypeDocumentsPrune + ":" + tn.ID + ":" + strconv.FormatInt(p.Tick, 10); ti.ID != want {
					t.Errorf("documents:prune of %s has id %s, want %s", tn.Slug, ti.ID, want)
				}
				var res struct{ Checked, Removed, Busy int }
				if err := json.Unmarshal(ti.Result, &res); err != nil {
					return fmt.Errorf("result %q of %s: %w", ti.Result, ti.ID, err)
				}
				// asynq keeps a task's completion time in whole seconds: a
				// prune in the same second as the deletion reads as before it.
				if res.Removed == 1 && !ti.CompletedAt.Before(deleted.Truncate(time.Second)) {
					removed = true
				}
			}
			if !removed {
				return fmt.Errorf("%s: no completed documents:prune with removed 1: %w", tn.Slug, errNotYet)
			}
		}
		return nil
	})
	var sweeps int
	for _, ti := range infos {
		if ti.Type == tasks.TypeSweepDocuments {
			sweeps++
		}
		if ti.Type == tasks.TypeDocumentsPrune && !strings.HasPrefix(ti.ID, tasks.TypeDocumentsPrune+":") {
			t.Errorf("documents:prune task id %s", ti.ID)
		}
	}
	if sweeps == 0 {
		t.Error("no completed sweep:documents in the low queue; want the scheduler's")
	}
	if got := s.workers[0].taskSummary()[tasks.TypeDocumentsPrune]; got == nil || got.outcomes["error"] > 0 || got.outcomes["panic"] > 0 || got.outcomes["skip_retry"] > 0 {
		t.Errorf("documents:prune runs in the worker's log: %+v", got)
	}
}
