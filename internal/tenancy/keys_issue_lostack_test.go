package tenancy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// storeAckLost reports the connection reset for the key's INSERT, as a
// client sees a COMMIT whose answer was lost; sent receives the key. With
// commit it commits the INSERT first (the answer lost after the commit);
// without, it sends nothing yet (the INSERT still in flight, committing
// later: the test stores the key itself afterwards).
type storeAckLost struct {
	storage.Catalog
	commit bool
	sent   *string
}

func (c storeAckLost) StoreAPIKey(ctx context.Context, tenantID, key string) (storage.APIKey, error) {
	*c.sent = key
	if c.commit {
		if _, err := c.Catalog.StoreAPIKey(ctx, tenantID, key); err != nil {
			return storage.APIKey{}, err
		}
	}
	return storage.APIKey{}, fmt.Errorf("create api key for tenant %s: %w", tenantID, errConnReset)
}

// TestIssueKeyWithLostCommitAckLeavesNoLiveKey: when the key's INSERT
// committed but its answer was lost, IssueKey fails and nobody received
// the key: it must not stay valid in the catalog, and the row it left must
// be accounted for in the audit log (tenant.key_issue_aborted naming it).
// The caller's retry gets a fresh key. Against PostgreSQL and, with the
// same contract, the in-memory catalog.
func TestIssueKeyWithLostCommitAckLeavesNoLiveKey(t *testing.T) {
	t.Parallel()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		tn := b.active(t, "lostissue")
		testIssueKeyWithLostAnswer(t, b.catalog, tn, true, func(c storage.Catalog) *tenancy.Service {
			return tenancy.New(tenancy.Config{Catalog: c, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
		})
	})
	t.Run("memstore", func(t *testing.T) {
		t.Parallel()
		c, tn := memTenant(t)
		testIssueKeyWithLostAnswer(t, c, tn, true, memService)
	})
}

// TestIssueKeyWithLostAnswerWithdrawsALateCommit: the INSERT whose answer
// was lost commits only after IssueKey failed (it was still in flight, as
// when ctx ends while it waits for a lock): its key was withdrawn
// beforehand, so that INSERT fails and the key is never valid.
func TestIssueKeyWithLostAnswerWithdrawsALateCommit(t *testing.T) {
	t.Parallel()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		tn := b.active(t, "lateissue")
		testIssueKeyWithLostAnswer(t, b.catalog, tn, false, func(c storage.Catalog) *tenancy.Service {
			return tenancy.New(tenancy.Config{Catalog: c, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
		})
	})
	t.Run("memstore", func(t *testing.T) {
		t.Parallel()
		c, tn := memTenant(t)
		testIssueKeyWithLostAnswer(t, c, tn, false, memService)
	})
}

// memTenant returns an in-memory catalog holding one active tenant.
func memTenant(t *testing.T) (storage.Catalog, tenantctx.Tenant) {
	t.Helper()
	c := memstore.New()
	tn, err := tenantctx.New("memissue", "memissue", tenancy.DefaultPlan)
	if err != nil {
		t.Fatal(err)
	}
	tn.Status = tenantctx.StatusActive
	if tn, err = c.CreateTenant(t.Context(), tn); err != nil {
		t.Fatal(err)
	}
	return c, tn
}

// memService is a Service on catalog c that issues keys and enqueues
// nothing.
func memService(c storage.Catalog) *tenancy.Service {
	return tenancy.New(tenancy.Config{Catalog: c, Enqueuer: tasks.NewEnqueuer(nil, nil, nil)})
}

// testIssueKeyWithLostAnswer issues a key to tn through a catalog that
// loses the INSERT's answer, after (commit) or before its commit, and
// checks that the call fails, that the key it sent is never valid and is
// accounted for once (tenant.key_issue_aborted, no tenant.key_issued),
// and that a retry issues a fresh key.
func testIssueKeyWithLostAnswer(t *testing.T, c storage.Catalog, tn tenantctx.Tenant, commit bool, service func(storage.Catalog) *tenancy.Service) {
	ctx := t.Context()
	before, err := c.ListAPIKeys(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	var sent string
	lost := service(storeAckLost{Catalog: c, commit: commit, sent: &sent})
	key, k, err := lost.IssueKey(ctx, tn.ID, tenancy.ActorAdmin)
	if err == nil || key != "" {
		t.Fatalf("IssueKey with the INSERT's answer lost = %q, %+v, %v; want an error and no key", key, k, err)
	}
	t.Logf("IssueKey with the answer lost: %v", err)
	if errors.Is(err, tenancy.ErrKeyLeftIssued) {
		t.Errorf("IssueKey with the answer lost says the key may be left valid, yet the catalog answers: %v", err)
	}
	if sent == "" {
		t.Fatal("IssueKey sent no key: the fault was not injected")
	}
	if !commit {
		// The INSERT still in flight commits now.
		if late, err := c.StoreAPIKey(ctx, tn.ID, sent); !errors.Is(err, storage.ErrConflict) {
			t.Errorf("the lost INSERT committing after IssueKey failed = %+v, %v; want ErrConflict (the key withdrawn)", late, err)
		}
	}
	if owner, err := c.TenantForAPIKey(ctx, sent); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the key sent by the failed IssueKey authenticates tenant %q (err %v); want it refused", owner, err)
	}
	after, err := c.ListAPIKeys(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	var left []storage.APIKey
	for _, k := range after {
		if !slices.ContainsFunc(before, func(o storage.APIKey) bool { return o.ID == k.ID }) {
			left = append(left, k)
		}
	}
	if len(left) != 1 || left[0].Prefix != storage.APIKeyDisplayPrefix(sent) || left[0].RevokedAt == nil {
		t.Fatalf("keys the failed IssueKey left: %+v; want the one it sent (%s...), revoked", left, storage.APIKeyDisplayPrefix(sent))
	}
	var aborted, issued int
	entries, err := c.AuditEntries(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !containsKeyID(string(e.Detail), left[0].ID) {
			continue
		}
		switch e.Action {
		case string(tenancy.ActionKeyIssueAborted):
			aborted++
		case string(tenancy.ActionKeyIssued):
			issued++
		}
	}
	if aborted != 1 || issued != 0 {
		t.Errorf("audit entries of key %d: %d %s, %d %s; want 1 and 0", left[0].ID, aborted, tenancy.ActionKeyIssueAborted, issued, tenancy.ActionKeyIssued)
	}

	// The caller's retry, with the catalog answering again: a fresh key.
	again, k2, err := service(c).IssueKey(ctx, tn.ID, tenancy.ActorAdmin)
	if err != nil {
		t.Fatalf("retried IssueKey: %v", err)
	}
	if again == sent || k2.ID == left[0].ID {
		t.Errorf("retried IssueKey returned the key the failed call sent")
	}
	if owner, err := c.TenantForAPIKey(ctx, again); err != nil || owner != tn.ID {
		t.Errorf("the retry's key: tenant %q, %v; want %s", owner, err, tn.ID)
	}
}
