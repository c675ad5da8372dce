package tasks

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/tenantctx"
)

// wireName is the form of a stable type name: area:action.
var wireName = regexp.MustCompile(`^[a-z]+:[a-z]+$`)

// TestRegisteredTypes: every registered type has a wire name of its own,
// is found by Lookup, has a usable Spec, and is a system task exactly when
// it is not a TenantPayload. A new payload type cannot be registered
// without TypeName, Spec and Validate: registered is a []Payload.
func TestRegisteredTypes(t *testing.T) {
	t.Parallel()
	var names []string
	for _, p := range Types() {
		name := p.TypeName()
		names = append(names, name)
		if !wireName.MatchString(name) {
			t.Errorf("%T: type name %q is not area:action", p, name)
		}
		if got, ok := Lookup(name); !ok || got != p {
			t.Errorf("Lookup(%q) = %v, %v", name, got, ok)
		}
		spec := p.Spec()
		if _, ok := QueueWeights[spec.Queue]; !ok {
			t.Errorf("%s: queue %q is not one of %v", name, spec.Queue, Queues)
		}
		if spec.MaxRetry <= 0 || spec.Timeout <= 0 || spec.Retention <= 0 || !strings.HasPrefix(spec.TaskID, name+":") {
			t.Errorf("%s: spec %+v: want retries, a timeout, a retention and a task id named after the type", name, spec)
		}
		if a := spec.Activity; a.String() == "unknown activity" {
			t.Errorf("%s: activity %d unknown to the status policy", name, a)
		}
		_, tenant := p.(TenantPayload)
		if IsSystemType(name) == tenant {
			t.Errorf("%s: IsSystemType = %v, but TenantPayload = %v", name, IsSystemType(name), tenant)
		}
		if tenant {
			// Every tenant payload's JSON carries tenant_id, as the worker's
			// envelope reads it.
			data, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := OwnerOf(data); err == nil || !strings.Contains(err.Error(), "tenant_id is empty") {
				t.Errorf("%s: zero payload %s: OwnerOf = %v, want tenant_id present and empty", name, data, err)
			}
		}
	}
	want := []string{TypeInvoicePDF, TypeInvoiceReminder, TypeInvoicesOverdue, TypeSweepOverdue, TypeSweepDocuments, TypeDocumentsPrune, TypeTenantMigrate, TypeTenantDestroy}
	if !slices.Equal(names, want) {
		t.Errorf("registered types %v, want %v", names, want)
	}
	if _, ok := Lookup("invoice:pdfx"); ok || IsSystemType("nope:nope") {
		t.Error("an unregistered name is known")
	}
	// Types returns a copy: the registration list cannot be changed.
	Types()[0] = nil
	if Types()[0] == nil {
		t.Error("Types shares the registration list")
	}
}

// TestSpecs is the task table of docs/architecture.md and the README:
// queues, dedupe ids, retries, activities.
func TestSpecs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p        Payload
		queue    string
		id       string
		retry    int
		timeout  time.Duration
		conflict ConflictPolicy
		activity tenantctx.Activity
	}{
		{InvoicePDF{TenantID: "tn_a", InvoiceID: 42}, QueueDefault, "invoice:pdf:tn_a:42", 10, 2 * time.Minute, ReplaceFinishedFollowRunning, tenantctx.Work},
		{InvoiceReminder{TenantID: "tn_a", InvoiceID: 42, Day: "2026-03-01"}, QueueLow, "invoice:reminder:tn_a:42:2026-03-01", 10, time.Minute, ReplaceFinished, tenantctx.Work},
		{InvoicesOverdue{TenantID: "tn_a", Tick: 7}, QueueLow, "invoices:overdue:tn_a:7", 10, 5 * time.Minute, KeepExisting, tenantctx.Work},
		{SweepOverdue{Tick: 7}, QueueLow, "sweep:overdue:7", 5, 30 * time.Minute, KeepExisting, tenantctx.Work},
		{TenantMigrate{TenantID: "tn_a"}, QueueCritical, "tenant:migrate:tn_a", 10, 10 * time.Minute, ReplaceFinished, tenantctx.Migration},
		{TenantDestroy{TenantID: "tn_a"}, QueueCritical, "tenant:destroy:tn_a", 10, 10 * time.Minute, ReplaceFinished, tenantctx.Destruction},
	}
	for _, tt := range tests {
		s := tt.p.Spec()
		if s.Queue != tt.queue || s.TaskID != tt.id || s.MaxRetry != tt.retry || s.Timeout != tt.timeout || s.Conflict != tt.conflict || s.Activity != tt.activity {
			t.Errorf("%s: spec %+v", tt.p.TypeName(), s)
		}
		if len(s.Options()) != 5 {
			t.Errorf("%s: %d asynq options, want queue, retry, timeout, id and retention", tt.p.TypeName(), len(s.Options()))
		}
	}
}

func TestOwnerOf(t *testing.T) {
	t.Parallel()
	for payload, want := range map[string]string{
		`{"tenant_id":"tn_a","invoice_id":1}`: "tn_a",
		`{"invoice_id":1}`:                    "payload has no tenant_id",
		`{"tenant_id":null}`:                  "payload has no tenant_id",
		`{"tenant_id":""}`:                    "tenant_id is empty",
		`{"tenant_id":42}`:                    "tenant_id is not a string",
		`{"tenant_id":"a\"; drop schema x"}`:  "bad tenant_id",
		`[1,2]`:                               "payload is not a JSON object",
		``:                                    "payload is not a JSON object",
	} {
		got, err := OwnerOf([]byte(payload))
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, want) {
			t.Errorf("OwnerOf(%s) = %q, want %q", payload, got, want)
		}
	}
}

// TestWorkQueuesHoldOnlyWork: suspension holds WorkQueues, so every tenant
// task of ordinary work must be in one and no lifecycle task may be.
func TestWorkQueuesHoldOnlyWork(t *testing.T) {
	t.Parallel()
	for _, p := range Types() {
		if IsSystemType(p.TypeName()) {
			continue
		}
		spec := p.Spec()
		inWork := slices.Contains(WorkQueues, spec.Queue)
		if isWork := spec.Activity == tenantctx.Work; inWork != isWork {
			t.Errorf("%s: queue %s (work queue: %v) but activity %v", p.TypeName(), spec.Queue, inWork, spec.Activity)
		}
	}
}
