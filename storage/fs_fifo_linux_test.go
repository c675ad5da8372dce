package storage_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/storage"
)

// TestFSOpenOfAFIFOIsNotFound: a FIFO planted at a document's path is no
// document: Open answers ErrNotFound at once, as for a directory there,
// and the documents beside it open as before. Open used to block in
// open(2) until a writer came, which held a download of the invoice (and a
// render's check of its stored document) for ever.
func TestFSOpenOfAFIFOIsNotFound(t *testing.T) {
	t.Parallel()
	b := setupFS(t)
	mustPut(t, b.store, "tn_a", "invoices/1.pdf", []byte("a1"))
	fifo := filepath.Join(b.store.Root(), "tn_a", "invoices", "2.pdf")
	if err := syscall.Mkfifo(fifo, 0o640); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		rc, _, err := b.store.Open(testContext(t), "tn_a", "invoices/2.pdf")
		if rc != nil {
			_ = rc.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Open of a FIFO at a document's path: %v, want ErrNotFound", err)
		}
	case <-time.After(10 * time.Second): // a bound for the failure message, not a measurement
		// A writer that comes and goes lets the blocked open return (and
		// its read end), so that the goroutine ends with the test.
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			_ = w.Close()
		}
		err := <-done
		t.Fatalf("Open of a FIFO at a document's path blocked until a writer came (then: %v), want ErrNotFound at once", err)
	}
	if got, _, err := readDoc(t, b.store, "tn_a", "invoices/1.pdf"); err != nil || string(got) != "a1" {
		t.Errorf("Open of the document beside the FIFO = %q, %v; want %q", got, err, "a1")
	}
}

// TestFSFIFOAtATemporaryDirectoryDoesNotBlock: a FIFO planted where a
// tenant's temporary directory (.tmp~) goes is no directory: a Put of the
// tenant's fails at once, and RemoveStaleTemp (every worker's start) goes
// past it. Both opened it as a directory and blocked until a writer came:
// the render for ever, and the worker's start-up clean-up, which its
// shutdown waits for, so that the worker never stopped on SIGTERM.
func TestFSFIFOAtATemporaryDirectoryDoesNotBlock(t *testing.T) {
	t.Parallel()
	b := setupFS(t)
	if err := b.store.PrepareTenant(testContext(t), "tn_a", "invoices"); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(b.store.Root(), "tn_a", ".tmp~")
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o640); err != nil {
		t.Fatal(err)
	}
	for _, op := range []struct {
		name string
		run  func() error
	}{
		{"Put", func() error {
			_, err := b.store.Put(testContext(t), "tn_a", "invoices/1.pdf", strings.NewReader("a1"))
			if err == nil {
				return errors.New("Put succeeded")
			}
			return nil
		}},
		{"RemoveStaleTemp", func() error {
			_, err := b.store.RemoveStaleTemp(testContext(t), time.Now())
			return err
		}},
	} {
		done := make(chan error, 1)
		go func() { done <- op.run() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s with a FIFO for the tenant's temporary directory: %v", op.name, err)
			}
		case <-time.After(10 * time.Second): // a bound for the failure message, not a measurement
			if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
				_ = w.Close()
			}
			<-done
			t.Errorf("%s with a FIFO for the tenant's temporary directory blocked until a writer came", op.name)
		}
	}
}
