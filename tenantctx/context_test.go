package tenantctx_test

import (
	"context"
	"testing"

	"github.com/invoicing/tenantworker/tenantctx"
)

func TestMustFromContextPanicsWithoutTenant(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("MustFromContext did not panic without a tenant")
		}
	}()
	tenantctx.MustFromContext(context.Background())
}

func TestZeroTenantIsNoTenant(t *testing.T) {
	t.Parallel()
	ctx := tenantctx.WithTenant(context.Background(), tenantctx.Tenant{})
	if _, ok := tenantctx.FromContext(ctx); ok {
		t.Fatal("a zero Tenant counted as a tenant")
	}
}
