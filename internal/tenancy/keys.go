package tenancy

import (
	"context"
	"fmt"

	"github.com/invoicing/tenantworker/tenantctx"
)

// IssueKey creates a new API key for the tenant and writes
// ActionKeyIssued; the key's plaintext exists only in the return value. A
// tenant whose status refuses work (being deleted) gets none: ErrRefused.
func (s *Service) IssueKey(ctx context.Context, id, actor string) (string, tenantctx.Tenant, error) {
	t, err := s.catalog.TenantByID(ctx, id)
	if err != nil {
		return "", t, fmt.Errorf("issue api key: %w", err)
	}
	if t.Status.Decide(tenantctx.Work) == tenantctx.Refuse {
		return "", t, fmt.Errorf("issue api key for tenant %s: %w: tenant is %s", id, ErrRefused, t.Status)
	}
	key, err := s.catalog.CreateAPIKey(ctx, id)
	if err != nil {
		return "", t, fmt.Errorf("issue api key for tenant %s: %w", id, err)
	}
	s.logFailure(ctx, id, ActionKeyIssued, s.audit(ctx, id, actor, ActionKeyIssued, map[string]string{"slug": t.Slug}))
	return key, t, nil
}
