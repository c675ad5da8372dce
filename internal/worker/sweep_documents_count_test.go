package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// failingDelete is the document store whose Delete of one key fails.
type failingDelete struct {
	*storage.FS
	key string
}

func (f failingDelete) Delete(ctx context.Context, tenantID, key string) error {
	if key == f.key {
		return errors.New("the disk said no")
	}
	return f.FS.Delete(ctx, tenantID, key)
}

// TestDocumentsPruneSaysWhatAFailedTenantRemoved: a tenant's prune that
// fails after a batch removed documents (its sixth batch fails) fails the
// task, to be retried, and its error says how many documents the batches
// before it removed: the log never says fewer were removed than are gone
// from the store. The retry removes the rest, and its result counts them.
func TestDocumentsPruneSaysWhatAFailedTenantRemoved(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	tn := e.provision(t, "acme", "acme")
	// 600 PDFs no row records (1000..1599: their keys sort as their ids),
	// checked in batches of 100: the sixth fails.
	const first, n = 1000, 600
	for id := int64(first); id < first+n; id++ {
		if _, err := e.docs.Put(e.ctx, tn.ID, invoice.DocumentKey(id), strings.NewReader("%PDF-1.4 deleted invoice")); err != nil {
			t.Fatal(err)
		}
	}
	healthy := e.h.Tenancy
	e.h.Tenancy = tenancy.New(tenancy.Config{Catalog: e.catalog, Enqueuer: e.enqueuer,
		Documents: failingDelete{FS: e.docs, key: invoice.DocumentKey(first + 550)}, SchemaPool: e.pool})

	p := tasks.DocumentsPrune{TenantID: tn.ID, Tick: 1}
	err := e.work(p)
	gone := 0
	for id := int64(first); id < first+n; id++ {
		_, err := os.Stat(filepath.Join(e.docs.Root(), tn.ID, filepath.FromSlash(invoice.DocumentKey(id))))
		if errors.Is(err, fs.ErrNotExist) {
			gone++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if gone < 500 {
		t.Fatalf("%d documents removed, want the first five batches' 500 at least", gone)
	}
	if want := fmt.Sprintf("(%d removed before the error)", gone); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("documents:prune with a failing batch: %v; want an error saying %q", err, want)
	}

	e.h.Tenancy = healthy
	var buf bytes.Buffer
	if err := e.w.Work(worker.RecordResults(e.ctx, &buf), p); err != nil {
		t.Fatalf("documents:prune again: %v", err)
	}
	var res struct{ Checked, Removed, Busy int }
	if err := json.Unmarshal(buf.Bytes(), &res); err != nil {
		t.Fatalf("result %q: %v", buf.String(), err)
	}
	if res.Checked != n-gone || res.Removed != n-gone || res.Busy != 0 {
		t.Errorf("result of the retry %s: want checked and removed %d (what the failed attempt left)", buf.String(), n-gone)
	}
}

// erasingDelete is the document store whose Delete of one key erases the
// tenant from the catalog first, as a destroy finishing meanwhile would.
type erasingDelete struct {
	*storage.FS
	catalog *storage.Postgres
	key     string
}

func (f erasingDelete) Delete(ctx context.Context, tenantID, key string) error {
	if key == f.key {
		if err := f.catalog.DeleteTenant(ctx, tenantID); err != nil {
			return err
		}
	}
	return f.FS.Delete(ctx, tenantID, key)
}

// TestDocumentsPruneOfATenantErasedMeanwhileCountsWhatItRemoved: a
// tenant erased while its documents are pruned (its destroy finished
// between two batches) completes the task, skipped as erased, and the
// result still counts what the batches before removed.
func TestDocumentsPruneOfATenantErasedMeanwhileCountsWhatItRemoved(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	tn := e.provision(t, "acme", "acme")
	const first, n = 1000, 300
	for id := int64(first); id < first+n; id++ {
		if _, err := e.docs.Put(e.ctx, tn.ID, invoice.DocumentKey(id), strings.NewReader("%PDF-1.4 deleted invoice")); err != nil {
			t.Fatal(err)
		}
	}
	e.h.Tenancy = tenancy.New(tenancy.Config{Catalog: e.catalog, Enqueuer: e.enqueuer,
		Documents: erasingDelete{FS: e.docs, catalog: e.catalog, key: invoice.DocumentKey(first + 150)}, SchemaPool: e.pool})
	var buf bytes.Buffer
	if err := e.w.Work(worker.RecordResults(e.ctx, &buf), tasks.DocumentsPrune{TenantID: tn.ID, Tick: 1}); err != nil {
		t.Fatalf("documents:prune of a tenant erased meanwhile: %v", err)
	}
	var res struct {
		Checked, Removed int
		Skipped          string
	}
	if err := json.Unmarshal(buf.Bytes(), &res); err != nil {
		t.Fatalf("result %q: %v", buf.String(), err)
	}
	if res.Skipped != "erased" || res.Removed < 100 || res.Checked != n {
		t.Errorf("result %s: want skipped erased, checked %d, and the first batch's 100 removed at least", buf.String(), n)
	}
}
