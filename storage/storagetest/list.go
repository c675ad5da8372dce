package storagetest

import (
	"context"
	"slices"
	"testing"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

func testListPaging(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	const n = 250
	statuses := []tenantctx.Status{tenantctx.StatusActive, tenantctx.StatusSuspended, tenantctx.StatusProvisioning}
	var all, active []string
	for i := range n {
		tn := mustCreate(t, ctx, c, statuses[i%len(statuses)])
		all = append(all, tn.ID)
		if tn.Status == tenantctx.StatusActive {
			active = append(active, tn.ID)
		}
	}
	slices.Sort(all)
	slices.Sort(active)

	tests := []struct {
		name string
		opts storage.ListOptions
		want []string
	}{
		{"all, pages of 7", storage.ListOptions{Limit: 7}, all},
		{"all, pages of 50", storage.ListOptions{Limit: 50}, all},
		{"all, one page", storage.ListOptions{Limit: n}, all},
		{"all, default page size", storage.ListOptions{}, all},
		{"active, pages of 9", storage.ListOptions{Status: tenantctx.StatusActive, Limit: 9}, active},
		{"deleting, none", storage.ListOptions{Status: tenantctx.StatusDeleting, Limit: 9}, nil},
	}
	for _, tt := range tests {
		got := listAll(t, ctx, c, tt.opts)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: listed %d ids, want %d (in id order, no duplicates, none missing)", tt.name, len(got), len(tt.want))
		}
	}

	first, err := c.ListTenants(ctx, storage.ListOptions{})
	if err != nil {
		t.Fatalf("ListTenants: %v", err)
	}
	if len(first) != storage.DefaultPageSize {
		t.Errorf("ListTenants with Limit 0 returned %d tenants, want DefaultPageSize %d", len(first), storage.DefaultPageSize)
	}
	last, err := c.ListTenants(ctx, storage.ListOptions{After: all[len(all)-1]})
	if err != nil || len(last) != 0 {
		t.Errorf("ListTenants after the last id = %d tenants, %v; want none", len(last), err)
	}
}

// listAll pages through the catalog with opts, checking each page, and
// returns the ids in the order listed.
func listAll(t *testing.T, ctx context.Context, c storage.Catalog, opts storage.ListOptions) []string {
	t.Helper()
	var ids []string
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatalf("ListTenants(%+v): more than 1000 pages, paging does not advance", opts)
		}
		page, err := c.ListTenants(ctx, opts)
		if err != nil {
			t.Fatalf("ListTenants(%+v): %v", opts, err)
		}
		if len(page) > opts.PageLimit() {
			t.Fatalf("ListTenants(%+v) returned %d tenants, over the limit %d", opts, len(page), opts.PageLimit())
		}
		for _, tn := range page {
			if opts.Status != "" && tn.Status != opts.Status {
				t.Errorf("ListTenants(status %s) returned %s in status %s", opts.Status, tn.ID, tn.Status)
			}
			ids = append(ids, tn.ID)
		}
		if len(page) < opts.PageLimit() {
			return ids
		}
		opts.After = page[len(page)-1].ID
	}
}
