package storage_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/storage"
)

// BenchmarkRemoveStaleTemp measures a worker's start-up removal of stale
// temporary files in a store of 100,000 documents (empty files), spread
// over 100 tenants of 1,000 documents or 10,000 tenants of 10, with one
// write's temporary file per tenant. The first call, not measured, is the
// one a store written before the tenants' temporary directories gets
// once; each measured call is what every later start costs.
func BenchmarkRemoveStaleTemp(b *testing.B) {
	for _, size := range []struct{ tenants, docs int }{{100, 1000}, {10000, 10}} {
		b.Run(fmt.Sprintf("tenants=%d/docs=%d", size.tenants, size.docs), func(b *testing.B) {
			store, err := storage.NewFS(filepath.Join(b.TempDir(), "docs"))
			if err != nil {
				b.Fatal(err)
			}
			for i := range size.tenants {
				dir := filepath.Join(store.Root(), fmt.Sprintf("tn_%05d", i), "invoices")
				if err := os.MkdirAll(dir, 0o750); err != nil {
					b.Fatal(err)
				}
				for j := range size.docs {
					if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d.pdf", j)), nil, 0o640); err != nil {
						b.Fatal(err)
					}
				}
				tmp := filepath.Join(store.Root(), fmt.Sprintf("tn_%05d", i), ".tmp~")
				if err := os.MkdirAll(tmp, 0o750); err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(tmp, ".put~1.pdf.LIVE"), nil, 0o640); err != nil {
					b.Fatal(err)
				}
			}
			ctx := context.Background()
			cutoff := time.Now().Add(-storage.StaleTempAge)
			start := time.Now()
			if _, err := store.RemoveStaleTemp(ctx, cutoff); err != nil {
				b.Fatal(err)
			}
			first := time.Since(start)
			for b.Loop() {
				if n, err := store.RemoveStaleTemp(ctx, cutoff); err != nil || n != 0 {
					b.Fatalf("RemoveStaleTemp = %d, %v", n, err)
				}
			}
			b.ReportMetric(float64(first.Milliseconds()), "first-ms")
		})
	}
}

// BenchmarkFSPut measures Put of a 30 KB document into 10 tenants'
// directories in turn, each key written again and again (its temporary
// file in the tenant's temporary directory, renamed over the document).
func BenchmarkFSPut(b *testing.B) {
	store, err := storage.NewFS(filepath.Join(b.TempDir(), "docs"))
	if err != nil {
		b.Fatal(err)
	}
	content := bytes.Repeat([]byte("%PDF-1.7 "), 30000/9)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		tenant := fmt.Sprintf("tn_%02d", i%10)
		key := fmt.Sprintf("invoices/%d.pdf", i%100)
		if _, err := store.Put(ctx, tenant, key, bytes.NewReader(content)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkFSFirstPut measures a tenant's first document: Put into a new
// tenant, whose directories it makes durable first, against Put into one
// whose directories PrepareTenant made when it was provisioned (not
// timed), as the worker's tenant:migrate does.
func BenchmarkFSFirstPut(b *testing.B) {
	content := bytes.Repeat([]byte("%PDF-1.7 "), 30000/9)
	for _, prepared := range []bool{false, true} {
		b.Run(fmt.Sprintf("prepared=%v", prepared), func(b *testing.B) {
			store, err := storage.NewFS(filepath.Join(b.TempDir(), "docs"))
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			i := 0
			for b.Loop() {
				tenant := fmt.Sprintf("tn_%06d", i)
				i++
				if prepared {
					b.StopTimer()
					if err := store.PrepareTenant(ctx, tenant, "invoices"); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				if _, err := store.Put(ctx, tenant, "invoices/1.pdf", bytes.NewReader(content)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFSOpen measures Open of a 37 KB document, which hashes it, and
// its Close: what invoice:pdf's check that a stored document is the one
// its row records costs before it keeps it unchanged.
func BenchmarkFSOpen(b *testing.B) {
	store, err := storage.NewFS(filepath.Join(b.TempDir(), "docs"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := store.Put(ctx, "tn_a", "invoices/1.pdf", bytes.NewReader(bytes.Repeat([]byte("%PDF-1.7 "), 37000/9))); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		rc, _, err := store.Open(ctx, "tn_a", "invoices/1.pdf")
		if err != nil {
			b.Fatal(err)
		}
		_ = rc.Close()
	}
}
