package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

// TestSweepDocumentsCountsWhatAFailedTenantRemoved: a tenant whose prune
// fails after a batch removed documents (its second batch fails) is
// counted as failed, and the documents its first batch removed are in the
// task result's "removed" (and "checked"): the result never says fewer
// documents were removed than are gone from the store.
func TestSweepDocumentsCountsWhatAFailedTenantRemoved(t *testing.T) {
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
	e.h.Tenancy = tenancy.New(tenancy.Config{Catalog: e.catalog, Enqueuer: e.enqueuer,
		Documents: failingDelete{FS: e.docs, key: invoice.DocumentKey(first + 550)}, SchemaPool: e.pool})

	var buf bytes.Buffer
	if err := e.w.Work(worker.RecordResults(e.ctx, &buf), tasks.SweepDocuments{Tick: 1}); err != nil {
		t.Fatalf("sweep:documents: %v", err)
	}
	var res struct{ Tenants, Failed, Checked, Removed, Busy int }
	if err := json.Unmarshal(buf.Bytes(), &res); err != nil {
		t.Fatalf("result %q: %v", buf.String(), err)
	}
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
	if res.Tenants != 1 || res.Failed != 1 || res.Removed != gone || res.Checked != n {
		t.Errorf("result %s: want tenants 1, failed 1, checked %d, removed %d (the documents gone from the store)", buf.String(), n, gone)
	}
}
