package tenancy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
)

// revokeAckLost commits RevokeAPIKey in PostgreSQL and then reports the
// connection reset, as a client sees a COMMIT whose answer was lost.
type revokeAckLost struct{ storage.Catalog }

func (c revokeAckLost) RevokeAPIKey(ctx context.Context, tenantID string, keyID int64) (bool, error) {
	if _, err := c.Catalog.RevokeAPIKey(ctx, tenantID, keyID); err != nil {
		return false, err
	}
	return false, fmt.Errorf("revoke api key %d of tenant %s: %w", keyID, tenantID, errConnReset)
}

// TestRevokeKeyWithLostCommitAckIsAuditedOnce: a revocation that committed
// but whose answer was lost fails; the caller's retry finds the key
// revoked already (the catalog says it revoked nothing) and must record
// the revocation all the same, once: one tenant.key_revoked for the key,
// and none for the tenant's other key.
func TestRevokeKeyWithLostCommitAckIsAuditedOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.active(t, "lostrevoke")
	_, k, err := b.svc.IssueKey(b.ctx, tn.ID, tenancy.ActorAdmin)
	if err != nil {
		t.Fatal(err)
	}
	_, other, err := b.svc.IssueKey(b.ctx, tn.ID, tenancy.ActorAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.svc.RevokeKey(b.ctx, tn.ID, other.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	lost := tenancy.New(tenancy.Config{Catalog: revokeAckLost{b.catalog}, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
	if err := lost.RevokeKey(b.ctx, tn.ID, k.ID, tenancy.ActorAdmin); err == nil {
		t.Fatal("RevokeKey with the answer lost: no error")
	}
	for range 2 { // the caller's retry, and one more
		if err := b.svc.RevokeKey(b.ctx, tn.ID, k.ID, tenancy.ActorAdmin); err != nil {
			t.Fatalf("retried RevokeKey: %v", err)
		}
	}
	revoked := map[string]int{}
	for _, e := range b.audit(t, tn.ID) {
		if e.Action == string(tenancy.ActionKeyRevoked) {
			revoked[string(e.Detail)]++
		}
	}
	var forKey, forOther int
	for detail, n := range revoked {
		switch {
		case containsKeyID(detail, k.ID):
			forKey += n
		case containsKeyID(detail, other.ID):
			forOther += n
		}
	}
	if forKey != 1 || forOther != 1 {
		t.Errorf("tenant.key_revoked entries %v: %d for the key whose answer was lost, %d for the other; want 1 each", revoked, forKey, forOther)
	}
}

// containsKeyID reports whether an audit detail names key id.
func containsKeyID(detail string, id int64) bool {
	var d struct {
		KeyID int64 `json:"key_id"`
	}
	return json.Unmarshal([]byte(detail), &d) == nil && d.KeyID == id
}
