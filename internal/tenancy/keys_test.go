package tenancy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestKeyLifecycle: keys are issued, listed (never the key) and revoked one
// at a time; each issue and each first revocation is audited once, with
// the key's id and prefix and never the key; another tenant's key id is
// not found.
func TestKeyLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.active(t, "keyring")
	other := b.active(t, "neighbour")

	key, k, err := b.svc.IssueKey(b.ctx, tn.ID, tenancy.ActorAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if k.ID <= 0 || k.Prefix != storage.APIKeyDisplayPrefix(key) {
		t.Fatalf("IssueKey record %+v for key %s...", k, k.Prefix)
	}
	keys, err := b.svc.ListKeys(b.ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The provisioning key and the new one.
	if len(keys) != 2 || keys[1].ID != k.ID || keys[0].RevokedAt != nil {
		t.Fatalf("ListKeys = %+v", keys)
	}
	if _, err := b.svc.ListKeys(b.ctx, tenantctx.NewID()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("ListKeys of an unknown tenant = %v, want ErrNotFound", err)
	}

	if err := b.svc.RevokeKey(b.ctx, other.ID, k.ID, tenancy.ActorAdmin); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RevokeKey through another tenant = %v, want ErrNotFound", err)
	}
	if err := b.svc.RevokeKey(b.ctx, tn.ID, k.ID+1000, tenancy.ActorAdmin); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RevokeKey of an unknown key = %v, want ErrNotFound", err)
	}
	for range 2 {
		if err := b.svc.RevokeKey(b.ctx, tn.ID, k.ID, tenancy.ActorAdmin); err != nil {
			t.Fatalf("RevokeKey: %v", err)
		}
	}
	if _, err := b.catalog.TenantForAPIKey(b.ctx, key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("revoked key still resolves: %v", err)
	}
	if keys, _ := b.svc.ListKeys(b.ctx, tn.ID); keys[1].RevokedAt == nil || keys[0].RevokedAt != nil {
		t.Errorf("after revoking key %d: %+v", k.ID, keys)
	}

	var issued, revoked []map[string]any
	for _, e := range b.audit(t, tn.ID) {
		var d map[string]any
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(e.Detail), key) || strings.Contains(string(e.Detail), storage.HashAPIKey(key)) {
			t.Errorf("audit entry %s holds the key or its hash: %s", e.Action, e.Detail)
		}
		switch tenancy.Action(e.Action) {
		case tenancy.ActionKeyIssued:
			issued = append(issued, d)
		case tenancy.ActionKeyRevoked:
			revoked = append(revoked, d)
		}
	}
	if len(issued) != 1 || issued[0]["key_id"] != float64(k.ID) || issued[0]["prefix"] != k.Prefix || issued[0]["slug"] != tn.Slug {
		t.Errorf("key issued entries %v", issued)
	}
	if len(revoked) != 1 || revoked[0]["key_id"] != float64(k.ID) || revoked[0]["prefix"] != k.Prefix {
		t.Errorf("key revoked entries %v, want one for key %d", revoked, k.ID)
	}
}

// unpropagated is a catalog whose writes that revoke access are saved but
// whose cache invalidation is not propagated, as storage.Cache reports it
// when Redis refuses the publish.
type unpropagated struct{ storage.Catalog }

func notPropagated(op string) error {
	return fmt.Errorf("%s: %w: publish: connection refused", op, storage.ErrInvalidationFailed)
}

func (u unpropagated) SetStatus(ctx context.Context, id string, s tenantctx.Status) (tenantctx.Tenant, error) {
	t, err := u.Catalog.SetStatus(ctx, id, s)
	if err != nil {
		return t, err
	}
	return t, notPropagated("set status")
}

func (u unpropagated) SetStatusFrom(ctx context.Context, id string, from, s tenantctx.Status) (tenantctx.Tenant, error) {
	t, err := u.Catalog.SetStatusFrom(ctx, id, from, s)
	if err != nil {
		return t, err
	}
	return t, notPropagated("set status")
}

func (u unpropagated) RevokeAPIKey(ctx context.Context, id string, keyID int64) (bool, error) {
	revoked, err := u.Catalog.RevokeAPIKey(ctx, id, keyID)
	if err != nil {
		return revoked, err
	}
	return revoked, notPropagated("revoke api key")
}

// TestNotPropagatedChangesFailTheCall: a key revocation, a suspension or a
// deletion request whose cache invalidation could not be published is
// saved and audited, but the call returns storage.ErrInvalidationFailed,
// so no operator is told a leaked key or a suspended tenant is shut out
// while other processes still let it in (P18 in docs/architecture.md).
func TestNotPropagatedChangesFailTheCall(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.active(t, "partitioned")
	svc := tenancy.New(tenancy.Config{Catalog: unpropagated{b.catalog}, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})

	key, k, err := svc.IssueKey(b.ctx, tn.ID, tenancy.ActorAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.RevokeKey(b.ctx, tn.ID, k.ID, tenancy.ActorAdmin); !errors.Is(err, storage.ErrInvalidationFailed) {
		t.Errorf("RevokeKey, not propagated = %v, want ErrInvalidationFailed", err)
	}
	if _, err := b.catalog.TenantForAPIKey(b.ctx, key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the key is not revoked in the catalog: %v", err)
	}

	got, err := svc.Suspend(b.ctx, tn.ID, tenancy.ActorAdmin)
	if !errors.Is(err, storage.ErrInvalidationFailed) || got.Status != tenantctx.StatusSuspended {
		t.Errorf("Suspend, not propagated = %s, %v; want suspended and ErrInvalidationFailed", got.Status, err)
	}
	d, err := svc.RequestDeletion(b.ctx, tn.ID, tenancy.ActorAdmin)
	if !errors.Is(err, storage.ErrInvalidationFailed) || d.Tenant.Status != tenantctx.StatusDeleting || d.TaskID == "" {
		t.Errorf("RequestDeletion, not propagated = %+v, %v; want deleting, a destroy task and ErrInvalidationFailed", d, err)
	}
	if _, err := b.inspector.GetTaskInfo(tasks.QueueCritical, "tenant:destroy:"+tn.ID); err != nil {
		t.Errorf("destroy task not enqueued: %v", err)
	}

	var actions []string
	for _, e := range b.audit(t, tn.ID) {
		actions = append(actions, e.Action)
	}
	for _, want := range []tenancy.Action{tenancy.ActionKeyRevoked, tenancy.ActionStatusChanged, tenancy.ActionDeletionRequested} {
		if !slices.Contains(actions, string(want)) {
			t.Errorf("audit actions %v: no %s for a change that was saved", actions, want)
		}
	}
}

// revokingMeanwhile runs revoke once, right after a ListAPIKeys returned:
// another revocation of the same key landing between RevokeKey's read of
// the key and its own revocation.
type revokingMeanwhile struct {
	storage.Catalog
	once   sync.Once
	revoke func()
}

func (c *revokingMeanwhile) ListAPIKeys(ctx context.Context, id string) ([]storage.APIKey, error) {
	keys, err := c.Catalog.ListAPIKeys(ctx, id)
	c.once.Do(c.revoke)
	return keys, err
}

// TestOverlappingRevocationsAuditOnce: two revocations of one key that
// overlap (two operators, a double click) both saw the key unrevoked; only
// the one that revoked it in the catalog records tenant.key_revoked.
func TestOverlappingRevocationsAuditOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.active(t, "revoketwice")
	_, k, err := b.svc.IssueKey(b.ctx, tn.ID, tenancy.ActorAdmin)
	if err != nil {
		t.Fatal(err)
	}
	rc := &revokingMeanwhile{Catalog: b.catalog, revoke: func() {
		if err := b.svc.RevokeKey(b.ctx, tn.ID, k.ID, tenancy.ActorAdmin); err != nil {
			t.Error(err)
		}
	}}
	svc := tenancy.New(tenancy.Config{Catalog: rc, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
	if err := svc.RevokeKey(b.ctx, tn.ID, k.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range b.audit(t, tn.ID) {
		if e.Action == string(tenancy.ActionKeyRevoked) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d tenant.key_revoked entries for one key, want 1", n)
	}
}
