package worker_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// mountTinyTmpfs mounts a tmpfs of size bytes on a new directory and
// unmounts it at the end of the test; a mount that is not allowed (not
// root, no CAP_SYS_ADMIN) fails the test with the reason.
func mountTinyTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("cannot mount a tmpfs for a full disk (the test needs CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fillDisk writes into dir until the file system is full and returns the
// filler's path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill the disk: %v", err)
			}
			return p
		}
	}
}

// TestInvoicePDFOnAFullDiskIsRetried: a render whose document cannot be
// written because the document directory's file system is full (ENOSPC)
// fails with an error that is retried (not archived at once), logs which
// invoice and why, keeps the previous document and its row, and leaves no
// temporary file behind; once there is room the next attempt stores the
// new version.
func TestInvoicePDFOnAFullDiskIsRetried(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	disk := mountTinyTmpfs(t, "512k")
	docs, err := storage.NewFS(filepath.Join(disk, "documents"))
	if err != nil {
		t.Fatal(err)
	}
	e.docs, e.h.Documents = docs, docs
	var logs bytes.Buffer
	w := workertest.New(e.h, worker.MuxOptions{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})

	acme := e.provision(t, "acme", "Acme")
	id := e.addInvoice(t, acme, acmeCustomer, acmeInvoice)
	p := tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}
	if err := w.Work(e.ctx, p); err != nil {
		t.Fatalf("first render: %v", err)
	}
	before, _ := e.documentRow(t, acme, id)
	old := e.readDocument(t, acme, before.StorageKey)

	e.inTenant(t, acme, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE invoices SET notes = 'Payable within 14 days.' WHERE id = $1", id)
		return err
	})
	filler := fillDisk(t, disk)
	err = w.Work(e.ctx, p)
	t.Logf("render on a full disk: %v", err)
	if err == nil || !errors.Is(err, syscall.ENOSPC) || worker.IsPermanent(err) {
		t.Errorf("render on a full disk: %v; want a retryable error wrapping ENOSPC", err)
	}
	t.Logf("log: %s", logs.String())
	if !strings.Contains(logs.String(), "no space left on device") {
		t.Errorf("the log does not say the disk is full:\n%s", logs.String())
	}
	if row, _ := e.documentRow(t, acme, id); row != before {
		t.Errorf("document row after the failed render %+v, want %+v", row, before)
	}
	if got := e.readDocument(t, acme, before.StorageKey); !bytes.Equal(got, old) {
		t.Errorf("the failed render changed the stored document")
	}
	tmp, err := os.ReadDir(filepath.Join(docs.Root(), acme.ID, ".tmp~"))
	if err != nil || len(tmp) != 0 {
		t.Errorf("temporary directory holds %d files (%v), want none", len(tmp), err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := w.Work(e.ctx, p); err != nil {
		t.Fatalf("render once there is room: %v", err)
	}
	after, _ := e.documentRow(t, acme, id)
	if after.SHA256 == before.SHA256 {
		t.Errorf("render once there is room kept the old document")
	}
	if text := pdfToText(t, e.readDocument(t, acme, after.StorageKey)); !strings.Contains(text, "Payable within 14 days.") {
		t.Errorf("the new document lacks the edit:\n%s", text)
	}
}
