package enqueueapp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/enqueueapp"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestTenantMoveDurationFlags: --grace and --drain-timeout that
// are zero or negative are not silently replaced by the defaults (3 s,
// 5 min): they are usage errors, before anything is opened.
func TestTenantMoveDurationFlags(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, args := range [][]string{
		{"tenant", "move", "acme", "--to", "eu2", "--grace", "-1s"},
		{"tenant", "move", "acme", "--to", "eu2", "--grace", "0"},
		{"tenant", "move", "acme", "--to", "eu2", "--drain-timeout", "0"},
		{"tenant", "move", "acme", "--to", "eu2", "--drain-timeout", "-5s"},
	} {
		if code, _, stderr := f.run(t, false, args...); code != enqueueapp.ExitUsage {
			t.Errorf("%q: exit %d stderr %q, want %d (usage)", args, code, stderr, enqueueapp.ExitUsage)
		}
	}
}

// TestQueuesJSONDefaultTop: "queues --json" prints what GET
// /admin/queues answers (README, --json's help); that route names the 10
// largest backlogs by default, the command 5.
func TestQueuesJSONDefaultTop(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	for i := range 8 {
		tn := f.provision(t, fmt.Sprintf("tenant%d", i))
		if _, err := f.deps.Catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
			t.Fatal(err)
		}
		var ps []tasks.Payload
		for j := range 12 + i {
			ps = append(ps, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: int64(j + 1)})
		}
		if _, err := f.deps.Enqueuer.EnqueueMany(ctx, tn.ID, ps); err != nil {
			t.Fatal(err)
		}
	}
	code, stdout, stderr := f.run(t, false, "queues", "--json")
	if code != enqueueapp.ExitOK {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	var got struct {
		Queues []fair.Overview `json:"queues"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	want, err := f.deps.Tenancy.Queues(ctx, 10) // GET /admin/queues's default
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Queues, want) {
		for i := range want {
			if want[i].Queue == tasks.QueueDefault {
				t.Errorf("default: --json names %d tenants, GET /admin/queues %d", len(got.Queues[i].Top), len(want[i].Top))
			}
		}
		t.Fatal("queues --json differs from GET /admin/queues without ?top")
	}
	_ = strings.TrimSpace
}
